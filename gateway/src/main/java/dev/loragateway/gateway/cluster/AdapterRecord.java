package dev.loragateway.gateway.cluster;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterInfo;
import dev.loragateway.adapters.AdapterKey;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * One uploaded adapter as the cluster knows it (an entry of {@link AdapterRecords}): what the API
 * shows, the digest that identifies its content, and the nodes that hold its files. A
 * {@code pending} record is a name reserved by an upload still being stored and replicated: it
 * counts toward the tenant's quota and takes the name, but no request or list sees it.
 *
 * <pre>
 * {"state": "ready", "sha256": "9c0f…", "created": 1767225600, "rank": 8, "alpha": 16, "targets": ["q_proj", "v_proj"],
 *  "bytes": 65536, "holders": ["node-0", "node-2"]}
 * {"state": "pending", "reservation": "5e1d…", "node": "node-1", "since": 1767225600123}
 * </pre>
 *
 * @param name the adapter's name
 * @param ready false while an upload holds the name ({@code pending})
 * @param sha256 content digest ({@code AdapterRegistry.digest}); null while pending
 * @param created registration time, epoch seconds
 * @param rank the config's {@code r}
 * @param alpha the config's {@code lora_alpha}
 * @param targets targeted modules as PEFT names
 * @param bytes size of the tensors as stored
 * @param holders node ids that hold a copy of the files (some may be gone)
 * @param reservation the upload's reservation id while pending, else null
 * @param node the uploading node while pending, else null
 * @param since when the reservation was made, epoch milliseconds (0 when ready)
 */
record AdapterRecord(String name, boolean ready, String sha256, long created, int rank, double alpha, List<String> targets,
                     long bytes, List<String> holders, String reservation, String node, long since) {
    AdapterRecord {
        targets = List.copyOf(targets);
        holders = List.copyOf(holders);
    }

    /** A name reserved by node {@code node}'s upload {@code reservation} at {@code now} (ms). */
    static AdapterRecord pending(String name, String reservation, String node, long now) {
        return new AdapterRecord(name, false, null, 0, 0, 0, List.of(), 0, List.of(), reservation, node, now);
    }

    /** The ready record of a registered adapter held by {@code holders}. */
    static AdapterRecord ready(AdapterInfo info, List<String> holders) {
        return new AdapterRecord(info.name(), true, info.sha256(), info.created(), info.rank(), info.alpha(), info.targets(),
            info.bytes(), holders, null, null, 0);
    }

    /** This record with {@code node} among its holders. */
    AdapterRecord withHolder(String node) {
        if (holders.contains(node)) {
            return this;
        }
        List<String> h = new ArrayList<>(holders);
        h.add(node);
        return new AdapterRecord(name, ready, sha256, created, rank, alpha, targets, bytes, h, reservation, node(), since);
    }

    /** The adapter as the API shows it; {@code directory} is this node's copy, or null without one. */
    AdapterInfo info(String tenant, Path directory) {
        return new AdapterInfo(AdapterKey.of(tenant, name), tenant, name, rank, alpha, targets, bytes, created, directory, sha256);
    }

    ObjectNode json() {
        ObjectNode o = AdapterRecords.JSON.createObjectNode().put("state", ready ? "ready" : "pending");
        if (ready) {
            o.put("sha256", sha256).put("created", created).put("rank", rank).put("alpha", alpha).put("bytes", bytes);
            targets.forEach(o.putArray("targets")::add);
            holders.forEach(o.putArray("holders")::add);
        } else {
            o.put("reservation", reservation).put("node", node).put("since", since);
        }
        return o;
    }

    static AdapterRecord of(String name, JsonNode o) {
        if (!"ready".equals(o.path("state").asText())) {
            return pending(name, o.path("reservation").asText(), o.path("node").asText(), o.path("since").asLong());
        }
        List<String> targets = new ArrayList<>();
        o.path("targets").forEach(t -> targets.add(t.asText()));
        List<String> holders = new ArrayList<>();
        o.path("holders").forEach(t -> holders.add(t.asText()));
        return new AdapterRecord(name, true, o.path("sha256").asText(), o.path("created").asLong(), o.path("rank").asInt(),
            o.path("alpha").asDouble(), targets, o.path("bytes").asLong(), holders, null, null, 0);
    }
}
