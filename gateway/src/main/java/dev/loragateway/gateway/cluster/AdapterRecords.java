package dev.loragateway.gateway.cluster;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.core.ReadOnly;
import com.hazelcast.map.EntryProcessor;
import com.hazelcast.map.IMap;
import dev.loragateway.scheduler.cluster.ClusterMember;
import java.io.UncheckedIOException;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;

/**
 * The cluster's adapter metadata: a Hazelcast map ({@link ClusterMember#ADAPTERS_MAP}, one
 * synchronous backup) with one entry per tenant, whose value is the JSON of all its adapters and of
 * its recent deletions:
 *
 * <pre>
 * "acme" → {"adapters": {"support-bot": {AdapterRecord}, "summarizer": {…}}, "deleted": {"old-bot": "SHA256"}}
 * </pre>
 *
 * <p>Why one entry per tenant: every change is an entry processor on that one key, which Hazelcast
 * runs atomically on the key's owner (and again on its backup), so "the name is free and the tenant
 * owns fewer than {@code max_adapters}" is checked and the name taken in one step, cluster-wide,
 * without a lock that a dead member could leave held. Reads of one adapter run a read-only
 * processor that returns just that record.
 *
 * <p>{@code deleted} remembers the digest last deleted under each name (at most
 * {@value #MAX_TOMBSTONES} per tenant): a node that held a copy and was away during the delete
 * finds it there when it rejoins and drops its copy instead of bringing the adapter back. The
 * memory lasts as long as one member of the cluster is up.
 */
final class AdapterRecords {
    static final ObjectMapper JSON = new ObjectMapper();
    static final int MAX_TOMBSTONES = 1024;

    /** What {@link #reserve} decided. */
    enum Outcome { RESERVED, EXISTS, QUOTA }

    /** {@link #reserve}'s answer, with the tenant's adapter count (pending ones included) when over quota. */
    record Reservation(Outcome outcome, int owned) {
    }

    /** What {@link #merge} did with a node's copy. */
    enum Merge {
        /** the cluster had no such adapter: the copy's record is in now */
        ADDED,
        /** the cluster has this very content: the node is one more holder */
        KEPT,
        /** the copy is newer than the cluster's adapter of that name, which it replaced */
        REPLACED,
        /** deleted while the node was away, or older than the cluster's adapter of that name: drop the copy */
        STALE,
        /** an upload of that name is in progress: leave the copy alone */
        PENDING
    }

    private final IMap<String, String> map;

    AdapterRecords(HazelcastInstance hz) {
        this.map = hz.getMap(ClusterMember.ADAPTERS_MAP);
    }

    /** The record of {@code tenant}'s adapter {@code name}, ready or pending. */
    Optional<AdapterRecord> get(String tenant, String name) {
        String r = map.executeOnKey(tenant, new Lookup(name));
        return r == null ? Optional.empty() : Optional.of(AdapterRecord.of(name, parse(r)));
    }

    /** The ready record of {@code tenant}'s adapter {@code name} (what requests and the API may see). */
    Optional<AdapterRecord> ready(String tenant, String name) {
        return get(tenant, name).filter(AdapterRecord::ready);
    }

    /** The tenant's ready adapters, by name. */
    List<AdapterRecord> all(String tenant) {
        return TenantAdapters.parse(map.get(tenant)).adapters.values().stream().filter(AdapterRecord::ready).toList();
    }

    /** How many names the tenant holds, pending uploads included (what its quota counts). */
    int count(String tenant) {
        return TenantAdapters.parse(map.get(tenant)).adapters.size();
    }

    /**
     * Reserves {@code name} for upload {@code reservation} of node {@code node} when it is free and
     * the tenant holds fewer than {@code maxAdapters} names (0: no limit). First, pending records
     * of nodes not in {@code live} or older than {@code pendingTtlMs} are dropped: their upload
     * died with its node.
     */
    Reservation reserve(String tenant, String name, String reservation, String node, int maxAdapters, long now, Set<String> live,
                        long pendingTtlMs) {
        String r = map.executeOnKey(tenant, new Reserve(name, reservation, node, maxAdapters, now, new HashSet<>(live), pendingTtlMs));
        if (r.startsWith("quota:")) {
            return new Reservation(Outcome.QUOTA, Integer.parseInt(r.substring(6)));
        }
        return new Reservation(r.equals("exists") ? Outcome.EXISTS : Outcome.RESERVED, 0);
    }

    /** Turns reservation {@code reservation} of {@code name} into {@code ready}; false when the reservation is gone. */
    boolean complete(String tenant, String name, String reservation, AdapterRecord ready) {
        return "ok".equals(map.executeOnKey(tenant, new Complete(name, reservation, ready.json().toString())));
    }

    /** Releases reservation {@code reservation} of {@code name} (the upload failed); anything else under the name stays. */
    void abort(String tenant, String name, String reservation) {
        map.executeOnKey(tenant, new Abort(name, reservation));
    }

    /** Removes the ready adapter {@code name} and remembers its digest as deleted; the removed record, if there was one. */
    Optional<AdapterRecord> remove(String tenant, String name) {
        String r = map.executeOnKey(tenant, new Remove(name));
        return r == null ? Optional.empty() : Optional.of(AdapterRecord.of(name, parse(r)));
    }

    /** Merges a node's copy (a ready record naming that node as holder) into the cluster's records; see {@link Merge}. */
    Merge merge(String tenant, AdapterRecord copy) {
        return Merge.valueOf(map.executeOnKey(tenant, new MergeCopy(copy.name(), copy.json().toString())));
    }

    /** Adds {@code node} to the holders of {@code name} when its record is ready with digest {@code sha256}. */
    boolean addHolder(String tenant, String name, String sha256, String node) {
        return "ok".equals(map.executeOnKey(tenant, new AddHolder(name, sha256, node)));
    }

    private static JsonNode parse(String json) {
        try {
            return JSON.readTree(json);
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** One tenant's entry, parsed; processors edit it and write it back. */
    static final class TenantAdapters {
        final TreeMap<String, AdapterRecord> adapters = new TreeMap<>();
        final LinkedHashMap<String, String> deleted = new LinkedHashMap<>();

        static TenantAdapters parse(String json) {
            TenantAdapters t = new TenantAdapters();
            if (json == null) {
                return t;
            }
            JsonNode root = AdapterRecords.parse(json);
            root.path("adapters").fields().forEachRemaining(e -> t.adapters.put(e.getKey(), AdapterRecord.of(e.getKey(), e.getValue())));
            root.path("deleted").fields().forEachRemaining(e -> t.deleted.put(e.getKey(), e.getValue().asText()));
            return t;
        }

        void tombstone(String name, String sha256) {
            deleted.remove(name);
            deleted.put(name, sha256);
            Iterator<String> oldest = deleted.keySet().iterator();
            while (deleted.size() > MAX_TOMBSTONES) {
                oldest.next();
                oldest.remove();
            }
        }

        /** The entry's new value: null removes an entry with nothing left in it. */
        String json() {
            if (adapters.isEmpty() && deleted.isEmpty()) {
                return null;
            }
            ObjectNode root = JSON.createObjectNode();
            ObjectNode a = root.putObject("adapters");
            adapters.forEach((n, r) -> a.set(n, r.json()));
            ObjectNode d = root.putObject("deleted");
            deleted.forEach(d::put);
            return root.toString();
        }
    }

    /*
     * The entry processors. Each runs on the key's owner and, unless read-only, again on its backup
     * with the same arguments; so each is a function of the entry and its fields only (the caller
     * passes the time and the live members).
     */

    /** The record of one name, as JSON, or null. */
    private static final class Lookup implements EntryProcessor<String, String, String>, ReadOnly {
        private static final long serialVersionUID = 1L;
        private final String name;

        Lookup(String name) {
            this.name = name;
        }

        @Override
        public String process(Map.Entry<String, String> entry) {
            AdapterRecord r = TenantAdapters.parse(entry.getValue()).adapters.get(name);
            return r == null ? null : r.json().toString();
        }

        @Override
        public EntryProcessor<String, String, String> getBackupProcessor() {
            return null;
        }
    }

    private static final class Reserve implements EntryProcessor<String, String, String> {
        private static final long serialVersionUID = 1L;
        private final String name;
        private final String reservation;
        private final String node;
        private final int maxAdapters;
        private final long now;
        private final HashSet<String> live;
        private final long pendingTtlMs;

        Reserve(String name, String reservation, String node, int maxAdapters, long now, HashSet<String> live, long pendingTtlMs) {
            this.name = name;
            this.reservation = reservation;
            this.node = node;
            this.maxAdapters = maxAdapters;
            this.now = now;
            this.live = live;
            this.pendingTtlMs = pendingTtlMs;
        }

        @Override
        public String process(Map.Entry<String, String> entry) {
            TenantAdapters t = TenantAdapters.parse(entry.getValue());
            boolean changed = t.adapters.values().removeIf(r -> !r.ready() && (!live.contains(r.node()) || now - r.since() > pendingTtlMs));
            String answer;
            if (t.adapters.containsKey(name)) {
                answer = "exists";
            } else if (maxAdapters > 0 && t.adapters.size() >= maxAdapters) {
                answer = "quota:" + t.adapters.size();
            } else {
                t.adapters.put(name, AdapterRecord.pending(name, reservation, node, now));
                changed = true;
                answer = "reserved";
            }
            if (changed) {
                entry.setValue(t.json());
            }
            return answer;
        }
    }

    private static final class Complete implements EntryProcessor<String, String, String> {
        private static final long serialVersionUID = 1L;
        private final String name;
        private final String reservation;
        private final String ready;

        Complete(String name, String reservation, String ready) {
            this.name = name;
            this.reservation = reservation;
            this.ready = ready;
        }

        @Override
        public String process(Map.Entry<String, String> entry) {
            TenantAdapters t = TenantAdapters.parse(entry.getValue());
            AdapterRecord r = t.adapters.get(name);
            if (r == null || r.ready() || !reservation.equals(r.reservation())) {
                return "lost";
            }
            t.adapters.put(name, AdapterRecord.of(name, parse(ready)));
            t.deleted.remove(name);
            entry.setValue(t.json());
            return "ok";
        }
    }

    private static final class Abort implements EntryProcessor<String, String, String> {
        private static final long serialVersionUID = 1L;
        private final String name;
        private final String reservation;

        Abort(String name, String reservation) {
            this.name = name;
            this.reservation = reservation;
        }

        @Override
        public String process(Map.Entry<String, String> entry) {
            TenantAdapters t = TenantAdapters.parse(entry.getValue());
            AdapterRecord r = t.adapters.get(name);
            if (r != null && !r.ready() && reservation.equals(r.reservation())) {
                t.adapters.remove(name);
                entry.setValue(t.json());
            }
            return null;
        }
    }

    private static final class Remove implements EntryProcessor<String, String, String> {
        private static final long serialVersionUID = 1L;
        private final String name;

        Remove(String name) {
            this.name = name;
        }

        @Override
        public String process(Map.Entry<String, String> entry) {
            TenantAdapters t = TenantAdapters.parse(entry.getValue());
            AdapterRecord r = t.adapters.get(name);
            if (r == null || !r.ready()) {
                return null;
            }
            t.adapters.remove(name);
            t.tombstone(name, r.sha256());
            entry.setValue(t.json());
            return r.json().toString();
        }
    }

    private static final class MergeCopy implements EntryProcessor<String, String, String> {
        private static final long serialVersionUID = 1L;
        private final String name;
        private final String copy;

        MergeCopy(String name, String copy) {
            this.name = name;
            this.copy = copy;
        }

        @Override
        public String process(Map.Entry<String, String> entry) {
            TenantAdapters t = TenantAdapters.parse(entry.getValue());
            AdapterRecord mine = AdapterRecord.of(name, parse(copy));
            AdapterRecord cur = t.adapters.get(name);
            Merge m;
            if (mine.sha256().equals(t.deleted.get(name))) {
                m = Merge.STALE;
            } else if (cur == null) {
                t.adapters.put(name, mine);
                m = Merge.ADDED;
            } else if (!cur.ready()) {
                m = Merge.PENDING;
            } else if (cur.sha256().equals(mine.sha256())) {
                for (String h : mine.holders()) {
                    cur = cur.withHolder(h);
                }
                t.adapters.put(name, cur);
                m = Merge.KEPT;
            } else if (mine.created() > cur.created() || (mine.created() == cur.created() && mine.sha256().compareTo(cur.sha256()) > 0)) {
                t.adapters.put(name, mine);
                t.tombstone(name, cur.sha256());
                m = Merge.REPLACED;
            } else {
                m = Merge.STALE;
            }
            if (m != Merge.STALE && m != Merge.PENDING) {
                entry.setValue(t.json());
            }
            return m.name();
        }
    }

    private static final class AddHolder implements EntryProcessor<String, String, String> {
        private static final long serialVersionUID = 1L;
        private final String name;
        private final String sha256;
        private final String node;

        AddHolder(String name, String sha256, String node) {
            this.name = name;
            this.sha256 = sha256;
            this.node = node;
        }

        @Override
        public String process(Map.Entry<String, String> entry) {
            TenantAdapters t = TenantAdapters.parse(entry.getValue());
            AdapterRecord r = t.adapters.get(name);
            if (r == null || !r.ready() || !sha256.equals(r.sha256())) {
                return "gone";
            }
            if (!r.holders().contains(node)) {
                t.adapters.put(name, r.withHolder(node));
                entry.setValue(t.json());
            }
            return "ok";
        }
    }
}
