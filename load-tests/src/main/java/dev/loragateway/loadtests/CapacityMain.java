package dev.loragateway.loadtests;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code load-tests/capacity.sh}'s program: the SLO capacity search ({@link CapacitySearch}) against a
 * running gateway or cluster, then the capacity page ({@link CapacityReport}). Prints one line per
 * rate, the summary (the sustainable rate in requests/s) and the page's path. Bad option values exit 2
 * naming the option, as the gateway's commands do.
 */
@Command(name = "capacity.sh", mixinStandardHelpOptions = true, sortOptions = false,
    description = "Highest arrival rate a gateway sustains under p99 TTFT / TPOT and error-rate SLOs, measured with Gatling.")
public final class CapacityMain implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--url", description = "gateway base URL (default ${DEFAULT-VALUE})", defaultValue = "http://127.0.0.1:8000")
    String url;
    @Option(names = "--keys", description = "the gateway's --api-keys file: each tenant t<i> sends its first key (default: no Authorization header)")
    String keys;
    @Option(names = "--metrics-url", split = ",", description = "/metrics URLs to read before and after each rate, summed (a cluster's nodes); default URL/metrics; 'none' to skip")
    List<String> metricsUrls;
    @Option(names = "--slo-ttft-p99", description = "p99 time to first token, seconds (default ${DEFAULT-VALUE})", defaultValue = "1.0")
    double sloTtft;
    @Option(names = "--slo-tpot-p99", description = "p99 time per output token, seconds (default ${DEFAULT-VALUE})", defaultValue = "0.1")
    double sloTpot;
    @Option(names = "--max-error-rate", description = "failed requests / requests (default ${DEFAULT-VALUE})", defaultValue = "0.01")
    double maxErrorRate;
    @Option(names = "--start-rate", description = "first rate, requests/s (default ${DEFAULT-VALUE})", defaultValue = "2")
    double startRate;
    @Option(names = "--max-rate", description = "highest rate tried, requests/s (default ${DEFAULT-VALUE})", defaultValue = "1000")
    double maxRate;
    @Option(names = "--step-seconds", description = "seconds each rate is offered (default ${DEFAULT-VALUE})", defaultValue = "15")
    double stepSeconds;
    @Option(names = "--max-steps", description = "most measured rates (default ${DEFAULT-VALUE})", defaultValue = "10")
    int maxSteps;
    @Option(names = "--precision", description = "stop bisecting when the lowest failing rate is within this fraction of the best (default ${DEFAULT-VALUE})", defaultValue = "0.15")
    double precision;
    @Option(names = "--warmup-seconds", description = "unmeasured first run at the start rate (default ${DEFAULT-VALUE})", defaultValue = "5")
    double warmupSeconds;
    @Option(names = "--out", description = "report folder (default load-tests/target/capacity/TIMESTAMP under the current directory)")
    Path out;
    @Option(names = "--gatling-console", description = "show Gatling's console output (default: into DESCRIPTION.console.txt beside the reports)")
    boolean gatlingConsole;
    @Option(names = "--model", description = "model id of base-model requests (default ${DEFAULT-VALUE})", defaultValue = "demo")
    String model;
    @Option(names = "--api", description = "completions, chat or both (default ${DEFAULT-VALUE})", defaultValue = "completions")
    String api;
    @Option(names = "--stream", description = "true, false or both (default ${DEFAULT-VALUE}; TTFT/TPOT are measured on streamed requests)", defaultValue = "true")
    String stream;
    @Option(names = "--vocab", description = "prompt token ids are drawn below this (default ${DEFAULT-VALUE}, the demo model's)", defaultValue = "512")
    int vocab;
    @Option(names = "--tenants", description = "workload: tenants t0..t(T-1) (default 4)")
    String tenants;
    @Option(names = "--adapters-per-tenant", description = "workload: adapters t<i>-a<j> per tenant, 0 = base model only (default 2); the gateway must serve them")
    String adaptersPerTenant;
    @Option(names = "--popularity", description = "workload: distinct, uniform, zipf:A or identical (default uniform)")
    String popularity;
    @Option(names = "--prompt-len", description = "workload: fixed:N, uniform:A:B, lognormal:MEAN:SIGMA[:MAX], sharegpt-prompt[:MAX] (default uniform:16:64)")
    String promptLen;
    @Option(names = "--output-len", description = "workload: as --prompt-len, or sharegpt-output[:MAX] (default uniform:8:32)")
    String outputLen;
    @Option(names = "--arrivals", description = "workload: constant, poisson or ramp:FROM:SECONDS (default poisson)")
    String arrivals;
    @Option(names = "--seed", description = "workload: seed (default 1)")
    String seed;
    @Option(names = "--target-rate", description = "requests/s to plan for: the page's 'nodes needed' section, measured node scaled and simulated (needs --profile)")
    Double targetRate;
    @Option(names = "--profile", description = "the simulator's step-time profile for --target-rate: a 'bench profile' file of the node's machine, or punica-a100-7b")
    String profile;
    @Option(names = "--sim-policy", description = "placement policy simulated for --target-rate (default ${DEFAULT-VALUE})", defaultValue = "consolidate")
    String simPolicy;
    @Option(names = "--sim-max-nodes", description = "most nodes the simulator tries for --target-rate (default ${DEFAULT-VALUE})", defaultValue = "4096")
    int simMaxNodes;

    private dev.loragateway.scheduler.sim.Profile simProfile;

    public static void main(String[] args) {
        // capacity.sh --smoke passes its own defaults first: a later value of an option wins
        System.exit(new CommandLine(new CapacityMain()).setOverwrittenOptionsAllowed(true).execute(args));
    }

    @Override
    public Integer call() throws Exception {
        LoadSpec load;
        Slo slo;
        CapacitySearch.Settings settings;
        List<URI> metrics = new ArrayList<>();
        try {
            Map<String, String> o = new LinkedHashMap<>();
            o.put("url", url);
            if (keys != null) o.put("keys", keys);
            o.put("model", model);
            o.put("api", api);
            o.put("stream", stream);
            o.put("vocab", Integer.toString(vocab));
            put(o, "tenants", tenants);
            put(o, "adapters-per-tenant", adaptersPerTenant);
            put(o, "popularity", popularity);
            put(o, "prompt-len", promptLen);
            put(o, "output-len", outputLen);
            put(o, "arrivals", arrivals);
            put(o, "seed", seed);
            load = LoadSpec.of(o);
            if (targetRate != null) {
                if (!(targetRate > 0) || !Double.isFinite(targetRate)) throw new IllegalArgumentException("--target-rate must be > 0 requests/s, got " + targetRate);
                if (profile == null) throw new IllegalArgumentException("--target-rate needs --profile FILE (bench profile on the node's machine) or --profile punica-a100-7b");
                if (simMaxNodes < 1 || simMaxNodes > 4096) throw new IllegalArgumentException("--sim-max-nodes must be 1 to 4096, got " + simMaxNodes);
                dev.loragateway.scheduler.placement.Placements.byName(simPolicy);
                simProfile = dev.loragateway.scheduler.sim.Profile.load(profile);
            }
            slo = new Slo(sloTtft, sloTpot, maxErrorRate);
            settings = new CapacitySearch.Settings(startRate, maxRate, stepSeconds, maxSteps, precision, warmupSeconds);
            if (metricsUrls == null) metrics.add(URI.create(load.url() + "/metrics"));
            else if (!(metricsUrls.size() == 1 && metricsUrls.get(0).equals("none")))
                for (String m : metricsUrls) metrics.add(URI.create(m));
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
        }
        String problem = reachable(load);
        if (problem != null) {
            System.err.println("capacity.sh: " + problem);
            return 1;
        }
        Path dir = out != null ? out : Path.of("load-tests", "target", "capacity",
            LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
        Map<String, String> workload = new LinkedHashMap<>(load.workload().options());
        workload.remove("rate");
        System.out.println("capacity search against " + load.url() + ": " + workload);
        CapacitySearch.Result r = CapacitySearch.run(load, slo, settings, metrics, dir, System.out::println, !gatlingConsole);
        NodesForTarget nodes = null;
        if (simProfile != null) {
            System.out.printf(java.util.Locale.ROOT, "simulating the cluster for %.2f requests/s (%s, profile %s) ...%n", targetRate, simPolicy, simProfile.name());
            nodes = NodesForTarget.compute(r, targetRate, simProfile, simPolicy, simMaxNodes);
            System.out.printf(java.util.Locale.ROOT, "nodes for %.2f requests/s: %s measured and scaled, %s simulated%n", targetRate,
                nodes.measuredNodes() < 0 ? "unknown" : Integer.toString(nodes.measuredNodes()),
                nodes.fewestNodes() < 0 ? "more than " + simMaxNodes : Integer.toString(nodes.fewestNodes()));
        }
        Path page = CapacityReport.write(r, nodes, dir);
        System.out.println(CapacityReport.summary(r));
        System.out.println("report: " + page.toAbsolutePath());
        return 0;
    }

    private static void put(Map<String, String> o, String key, String value) {
        if (value != null) o.put(key, value);
    }

    /** Null when {@code GET /v1/models} answers 200 (with the first tenant's key), else why not. */
    private static String reachable(LoadSpec load) {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(load.url() + "/v1/models")).timeout(Duration.ofSeconds(10));
        String key = load.keys().get("t0");
        if (key != null) b.header("Authorization", "Bearer " + key);
        try {
            HttpResponse<String> r = HttpClient.newHttpClient().send(b.build(), HttpResponse.BodyHandlers.ofString());
            return r.statusCode() == 200 ? null : "GET " + load.url() + "/v1/models answered " + r.statusCode() + ": " + r.body();
        } catch (Exception e) {
            return "no gateway at " + load.url() + " (" + e + ")";
        }
    }
}
