package dev.loragateway.gateway.cli;

import dev.loragateway.scheduler.placement.Placements;
import dev.loragateway.scheduler.sim.ClusterSim;
import dev.loragateway.scheduler.sim.NodeConfig;
import dev.loragateway.scheduler.sim.Profile;
import dev.loragateway.scheduler.sim.SimReport;
import dev.loragateway.scheduler.sim.SimResult;
import dev.loragateway.scheduler.workload.TraceRequest;
import dev.loragateway.scheduler.workload.Traces;
import dev.loragateway.scheduler.workload.Workload;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/**
 * {@code simulate}: a cluster of N nodes under a generated or recorded trace, placed by the
 * scheduler's own policies, one row per policy (see {@link ClusterSim}). Everything is checked
 * before the first run: a bad option exits 2 naming it and its value.
 */
@Command(name = "simulate", mixinStandardHelpOptions = true, sortOptions = false,
    description = {"Simulate a cluster of N nodes under a request trace with the scheduler's own placement policies and print, per "
        + "policy, throughput, TTFT / latency / TPOT percentiles, nodes busy, nodes needed for the SLO, adapter loads and migrations.",
        "Without --trace the workload options generate the trace (as the Gatling simulations do)."})
final class SimulateCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--nodes", required = true, paramLabel = "N", description = "Nodes in the cluster (1 to 4194304).")
    int nodes;

    @Option(names = "--requests", required = true, paramLabel = "R", description = "Requests: the first R of the trace.")
    int requests;

    @Option(names = "--policies", split = ",", paramLabel = "P,...",
        description = "Placement policies, each run on the same trace (default: all: consolidate, least-loaded, round-robin, adapter-affinity).")
    List<String> policies;

    @Option(names = "--trace", paramLabel = "FILE", description = "A JSONL trace (arrival_s, tenant, adapter, prompt_tokens, output_tokens) "
        + "instead of the workload options.")
    Path trace;

    @Option(names = "--tenants", paramLabel = "T", description = "Tenants (default 4).")
    String tenants;
    @Option(names = "--adapters-per-tenant", paramLabel = "A", description = "Adapters per tenant; 0 = base model only (default 2).")
    String adaptersPerTenant;
    @Option(names = "--popularity", paramLabel = "P", description = "distinct | uniform | zipf:ALPHA | identical (default uniform).")
    String popularity;
    @Option(names = "--prompt-len", paramLabel = "D", description = "fixed:N | uniform:A:B | lognormal:MEAN:SIGMA[:MAX] | sharegpt-prompt[:MAX] "
        + "(default uniform:16:64).")
    String promptLen;
    @Option(names = "--output-len", paramLabel = "D", description = "As --prompt-len, or sharegpt-output[:MAX] (default uniform:8:32).")
    String outputLen;
    @Option(names = "--arrivals", paramLabel = "A", description = "constant | poisson | ramp:FROM:SECONDS (default poisson).")
    String arrivals;
    @Option(names = "--rate", paramLabel = "R", description = "Requests per second (default 4).")
    String rate;
    @Option(names = "--seed", paramLabel = "S", description = "Seed of the generated trace (default 1).")
    String seed;

    @Option(names = "--profile", paramLabel = "FILE|" + Profile.PUNICA, defaultValue = Profile.PUNICA,
        description = "Step-time and load-cost profile: a file written by 'bench profile', or the shipped " + Profile.PUNICA
            + " (default: the question is GPU capacity; measure this machine with 'bench profile').")
    String profile;

    @Option(names = "--max-batch", paramLabel = "N", description = "Per node, as serve (default: the profile's).")
    Integer maxBatch;
    @Option(names = "--max-num-batched-tokens", paramLabel = "N", description = "Per node, as serve (default: the profile's).")
    Integer maxStepTokens;
    @Option(names = "--kv-blocks", paramLabel = "N", description = "KV blocks of 16 positions per node (default: the profile's).")
    Integer kvBlocks;
    @Option(names = "--kv-cache-mb", paramLabel = "MB", description = "The KV pool per node in MB, as serve: MB ÷ the profile's kv_block_bytes "
        + "blocks (a profile written by 'bench profile' records it); not with --kv-blocks.")
    Integer kvCacheMb;
    @Option(names = "--gpu-adapter-slots", paramLabel = "N", description = "Device adapter slots per node, as serve (default: the profile's).")
    Integer slots;
    @Option(names = "--host-adapters", paramLabel = "N", description = "Adapters the host tier holds per node (default: the profile's).")
    Integer hostAdapters;

    @Option(names = "--slo-ttft-p99", paramLabel = "S", description = "SLO: p99 time to first token, seconds.")
    Double sloTtft;
    @Option(names = "--slo-tpot-p99", paramLabel = "S", description = "SLO: p99 time per output token, seconds.")
    Double sloTpot;
    @Option(names = "--find-nodes", description = "Also bisect, per policy, the fewest nodes (up to --nodes) whose run meets the SLOs.")
    boolean findNodes;
    @Option(names = "--no-migration", description = "Preempt on a dry KV pool instead of moving the sequence to another node.")
    boolean noMigration;

    @Option(names = "--out", paramLabel = "DIR", description = "Write report.md, report.html (SVG of nodes busy over time), busy.svg and results.json.")
    Path out;

    @Override
    public Integer call() throws Exception {
        if (nodes < 1) {
            throw bad("--nodes must be >= 1, got " + nodes);
        }
        if (requests < 1) {
            throw bad("--requests must be >= 1, got " + requests);
        }
        List<String> names = policies == null ? Placements.NAMES : policies;
        for (String p : names) {
            if (!Placements.NAMES.contains(p)) {
                throw bad("--policies: unknown policy '" + p + "' (use " + String.join(", ", Placements.NAMES) + ")");
            }
        }
        for (Double slo : new Double[] {sloTtft, sloTpot}) {
            if (slo != null && !(slo > 0)) {
                throw bad("--slo-ttft-p99 and --slo-tpot-p99 must be > 0 seconds, got " + slo);
            }
        }
        if (findNodes && sloTtft == null && sloTpot == null) {
            throw bad("--find-nodes needs --slo-ttft-p99 or --slo-tpot-p99");
        }
        if (kvCacheMb != null && kvBlocks != null) {
            throw bad("--kv-cache-mb and --kv-blocks both size the KV pool: give one");
        }
        if (kvCacheMb != null && kvCacheMb < 1) {
            throw bad("--kv-cache-mb must be >= 1, got " + kvCacheMb);
        }
        Profile prof;
        try {
            prof = Profile.load(profile);
        } catch (IllegalArgumentException e) {
            throw bad("--profile " + profile + ": " + e.getMessage());
        }
        Integer blocks = kvBlocks;
        if (kvCacheMb != null) {
            if (prof.kvBlockBytes() <= 0) {
                throw bad("--kv-cache-mb " + kvCacheMb + ": the profile " + prof.name() + " does not record kv_block_bytes (a profile "
                    + "written by 'bench profile' does); give --kv-blocks instead");
            }
            long b = kvCacheMb * (1L << 20) / prof.kvBlockBytes(); // as serve sizes its pool
            if (b < 1) {
                throw bad("--kv-cache-mb " + kvCacheMb + " holds less than one KV block (" + prof.kvBlockBytes() + " bytes)");
            }
            blocks = (int) Math.min(Integer.MAX_VALUE, b);
        }
        try {
            NodeConfig n = prof.node();
            prof = prof.withNode(new NodeConfig(pick(maxBatch, n.maxBatch()), pick(maxStepTokens, n.maxStepTokens()),
                pick(blocks, n.kvBlocks()), n.blockSize(), pick(slots, n.adapterSlots()), pick(hostAdapters, n.hostAdapters())));
        } catch (IllegalArgumentException e) {
            throw bad("--profile " + profile + " / node options: " + e.getMessage());
        }
        List<String> header = new ArrayList<>();
        Source source = source(header);
        NodeConfig n = prof.node();
        header.add(String.format(Locale.ROOT, "profile %s: %s", prof.name(), prof.source()));
        header.add(String.format(Locale.ROOT, "step ms = %.4g + %.4g × decode rows + %.4g × prompt tokens + %.4g × adapters%s; "
            + "adapter load %.4g ms from host, %.4g ms from disk", prof.baseMs(), prof.decodeRowMs(), prof.promptTokenMs(),
            prof.adapterMs(), prof.attendedMs() > 0 ? String.format(Locale.ROOT, " + %.4g × positions attended", prof.attendedMs()) : "",
            prof.hostLoadMs(), prof.diskLoadMs()));
        header.add(String.format(Locale.ROOT, "%d nodes, each: max batch %d, max-num-batched-tokens %d, %d KV blocks of %d, "
            + "%d adapter slots, %d adapters in the host tier; migration on a dry KV pool %s", nodes, n.maxBatch(),
            n.maxStepTokens(), n.kvBlocks(), n.blockSize(), n.adapterSlots(), n.hostAdapters(), noMigration ? "off" : "on"));
        header.add("SLO: p99 TTFT " + (sloTtft == null ? "none" : sloTtft + " s") + ", p99 TPOT "
            + (sloTpot == null ? "none" : sloTpot + " s"));
        for (String h : header) {
            System.out.println(h);
        }
        System.out.println();
        List<SimResult> results = new ArrayList<>();
        boolean first = true;
        for (String p : names) {
            SimResult r = run(prof, source, p, nodes);
            if (findNodes) {
                r = withNodesNeeded(r, bisect(prof, source, p, r));
            }
            results.add(r);
            String t = SimReport.table(List.of(r));
            System.out.print(first ? t : t.substring(t.indexOf('\n', t.indexOf('\n') + 1) + 1));
            System.out.flush();
            first = false;
        }
        if (out != null) {
            SimReport.write(out, header, results);
            System.out.println("\nreport: " + out.resolve("report.html") + " (and report.md, results.json)");
        }
        return 0;
    }

    /** Where the requests come from: a trace file read once, or the workload generator. */
    private record Source(List<TraceRequest> list, Workload workload, double expectedSeconds) {
        Iterator<TraceRequest> iterator() {
            return list != null ? list.iterator() : workload.trace();
        }
    }

    private Source source(List<String> header) {
        Map<String, String> w = new LinkedHashMap<>();
        put(w, "tenants", tenants);
        put(w, "adapters-per-tenant", adaptersPerTenant);
        put(w, "popularity", popularity);
        put(w, "prompt-len", promptLen);
        put(w, "output-len", outputLen);
        put(w, "arrivals", arrivals);
        put(w, "rate", rate);
        put(w, "seed", seed);
        if (trace != null) {
            if (!w.isEmpty()) {
                throw bad("--trace replaces the workload options: drop --" + String.join(", --", w.keySet()));
            }
            if (!Files.isRegularFile(trace)) {
                throw bad("--trace " + trace + ": no such file");
            }
            List<TraceRequest> all;
            try {
                all = new ArrayList<>(Traces.read(trace));
            } catch (IllegalArgumentException | java.io.UncheckedIOException e) {
                throw bad("--trace " + trace + ": " + e.getMessage());
            }
            if (all.isEmpty()) {
                throw bad("--trace " + trace + ": no requests in it");
            }
            all.sort(Comparator.comparingDouble(TraceRequest::arrivalSeconds)); // stable: file order on ties
            List<TraceRequest> used = all.subList(0, Math.min(requests, all.size()));
            header.add("trace " + trace + ": " + used.size() + " requests" + (all.size() < requests
                ? " (all of the file; --requests asked for " + requests + ")" : " (the first " + requests + " of " + all.size() + ")"));
            return new Source(used, null, used.get(used.size() - 1).arrivalSeconds());
        }
        Workload wl;
        try {
            wl = Workload.of(w);
        } catch (IllegalArgumentException e) {
            throw bad(e.getMessage());
        }
        StringBuilder d = new StringBuilder("workload: " + requests + " requests,");
        wl.options().forEach((k, v) -> d.append(" --").append(k).append(' ').append(v));
        header.add(d.toString());
        return new Source(null, wl, requests / wl.rate());
    }

    private static void put(Map<String, String> m, String k, String v) {
        if (v != null) {
            m.put(k, v);
        }
    }

    private SimResult run(Profile prof, Source src, String policy, int n) {
        ClusterSim sim = new ClusterSim(new ClusterSim.Options(n, policy, prof, !noMigration, sloTtft == null ? Double.NaN : sloTtft,
            sloTpot == null ? Double.NaN : sloTpot));
        return sim.run(src.iterator(), requests, src.expectedSeconds());
    }

    /** The fewest nodes (1 to --nodes) whose run meets the SLOs, assuming more nodes never hurt; −1 when --nodes does not. */
    private int bisect(Profile prof, Source src, String policy, SimResult atMax) {
        return ClusterSim.fewestNodes(nodes, n -> n == nodes ? atMax.sloMet() : run(prof, src, policy, n).sloMet());
    }

    private static SimResult withNodesNeeded(SimResult r, int needed) {
        return new SimResult(r.policy(), r.nodes(), r.requests(), r.completed(), r.refused(), r.seconds(), r.requestsPerSecond(),
            r.tokensPerSecond(), r.ttftP50(), r.ttftP99(), r.e2eP50(), r.e2eP99(), r.tpotP99(), r.busyMean(), r.busyPeak(),
            r.sloMet(), needed, r.hostLoads(), r.diskLoads(), r.migrated(), r.preemptions(), r.steps(), r.wallSeconds(),
            r.bucketSeconds(), r.busyOverTime());
    }

    private static int pick(Integer given, int fallback) {
        return given != null ? given : fallback;
    }

    private ParameterException bad(String message) {
        return new ParameterException(spec.commandLine(), message);
    }
}
