package dev.loragateway.loadtests;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * S-LoRA's claim on one gateway: throughput with thousands of adapters in use stays near throughput
 * with a few always-hot ones. Starts a gateway on the demo model with API keys for T tenants,
 * uploads N random rank-R adapters through {@code POST /v1/adapters} (N / T per tenant, named as the
 * workload names them, {@code t<i>-a<j>}), then runs the same closed-model Gatling load twice per
 * round: over {@code --hot} adapters that always stay in their device slots, and Zipf-distributed
 * over all N (most requests hit a few popular adapters, the tail is paged in from the host tier or
 * disk). Prints and writes (many-adapters.md) each load's throughput, p99 TTFT and the adapter loads
 * per second the tiers did, and the throughput ratio many / hot.
 *
 * <p>Closed model (a fixed number of users, each sending its next request when the last ends) because
 * throughput is the question: an open-model rate below capacity would give both loads the same
 * throughput by construction.
 */
@Command(name = "capacity.sh --many-adapters", mixinStandardHelpOptions = true, sortOptions = false,
    description = "Throughput with N uploaded adapters (Zipf) against the same load over a few always-hot adapters.")
public final class ManyAdapters implements Callable<Integer> {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Spec
    CommandSpec spec;

    @Option(names = "--jar", description = "the gateway jar (default ${DEFAULT-VALUE})", defaultValue = "gateway/target/lora-gateway.jar")
    Path jar;
    @Option(names = "--adapters", description = "adapters uploaded (default ${DEFAULT-VALUE})", defaultValue = "2000")
    int adapters;
    @Option(names = "--tenants", description = "tenants owning them (default ${DEFAULT-VALUE})", defaultValue = "100")
    int tenants;
    @Option(names = "--rank", description = "their rank, on all seven projections (default ${DEFAULT-VALUE})", defaultValue = "8")
    int rank;
    @Option(names = "--hot", description = "adapters of the always-hot load (default ${DEFAULT-VALUE})", defaultValue = "8")
    int hot;
    @Option(names = "--popularity", description = "popularity over all adapters (default ${DEFAULT-VALUE})", defaultValue = "zipf:1.5")
    String popularity;
    @Option(names = "--concurrency", description = "closed-model users (default ${DEFAULT-VALUE}: the default --max-batch)", defaultValue = "32")
    int concurrency;
    @Option(names = "--seconds", description = "seconds per measured run (default ${DEFAULT-VALUE})", defaultValue = "20")
    double seconds;
    @Option(names = "--rounds", description = "hot/many pairs, alternated (default ${DEFAULT-VALUE})", defaultValue = "2")
    int rounds;
    @Option(names = "--prompt-len", description = "workload prompt lengths (default ${DEFAULT-VALUE})", defaultValue = "uniform:16:64")
    String promptLen;
    @Option(names = "--output-len", description = "workload output lengths (default ${DEFAULT-VALUE})", defaultValue = "uniform:8:32")
    String outputLen;
    @Option(names = "--serve-option", description = "one more option for serve, e.g. --serve-option=--gpu-adapter-slots=32 (repeatable)")
    List<String> serveOptions = new ArrayList<>();
    @Option(names = "--out", description = "report folder (default load-tests/target/many-adapters/TIMESTAMP)")
    Path out;

    public static void main(String[] args) {
        System.exit(new CommandLine(new ManyAdapters()).execute(args));
    }

    /** One measured load. */
    record Run(String load, int round, StepResult step, double hostLoadsPerSecond, double deviceLoadsPerSecond) {}

    @Override
    public Integer call() throws Exception {
        if (adapters < 1 || tenants < 1 || adapters % tenants != 0)
            throw new CommandLine.ParameterException(spec.commandLine(), "--adapters must be a positive multiple of --tenants, got " + adapters + " and " + tenants);
        if (hot < 1 || hot > tenants)
            throw new CommandLine.ParameterException(spec.commandLine(), "--hot must be 1 to --tenants (" + tenants + "), got " + hot);
        if (concurrency < 1 || !(seconds > 0) || rounds < 1)
            throw new CommandLine.ParameterException(spec.commandLine(), "--concurrency, --seconds and --rounds must be positive");
        int perTenant = adapters / tenants;
        Path dir = out != null ? out : Path.of("load-tests", "target", "many-adapters",
            LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
        Files.createDirectories(dir);
        Path tmp = Files.createTempDirectory("lora-many-adapters");
        try {
            long t0 = System.nanoTime();
            Process p = new ProcessBuilder(GatewayProcess.java(), "-jar", jar.toString(), "demo-model", "--out", tmp.resolve("model").toString(),
                "--extra-adapters", Integer.toString(adapters), "--extra-rank", Integer.toString(rank))
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
            if (!p.waitFor(600, TimeUnit.SECONDS) || p.exitValue() != 0) {
                p.destroyForcibly();
                throw new IllegalStateException("demo-model --extra-adapters " + adapters + " failed");
            }
            Path keys = writeKeys(tmp.resolve("keys.json"), tenants, perTenant);
            List<String> serve = new ArrayList<>(List.of("--model", tmp.resolve("model").toString(), "--api-keys", keys.toString(),
                "--data-dir", tmp.resolve("data").toString()));
            serveOptions.forEach(serve::add);
            System.out.printf(Locale.ROOT, "wrote %d rank-%d adapters in %.1f s%n", adapters, rank, (System.nanoTime() - t0) / 1e9);
            try (GatewayProcess gw = GatewayProcess.start(jar, serve, tmp.resolve("serve.log"), 120)) {
                long u0 = System.nanoTime();
                upload(gw.url(), tmp.resolve("model/adapters"), tenants, perTenant);
                double uploadS = (System.nanoTime() - u0) / 1e9;
                System.out.printf(Locale.ROOT, "uploaded %d adapters for %d tenants through POST /v1/adapters in %.1f s (%.0f/s)%n",
                    adapters, tenants, uploadS, adapters / uploadS);
                List<Run> runs = measure(gw.url(), keys, perTenant, dir);
                Path page = report(dir, runs, uploadS, perTenant);
                System.out.println(summary(runs));
                System.out.println("report: " + page.toAbsolutePath());
            }
            return 0;
        } finally {
            deleteTree(tmp);
        }
    }

    private List<Run> measure(URI url, Path keys, int perTenant, Path dir) throws Exception {
        Map<String, String> common = new LinkedHashMap<>();
        common.put("url", url.toString());
        common.put("keys", keys.toString());
        common.put("concurrency", Integer.toString(concurrency));
        common.put("seconds", Double.toString(seconds));
        common.put("prompt-len", promptLen);
        common.put("output-len", outputLen);
        common.put("arrivals", "poisson");
        common.put("rate", "1000"); // unused by the closed model's users, but the trace needs one
        Map<String, String> hotLoad = new LinkedHashMap<>(common);
        hotLoad.put("tenants", Integer.toString(hot));
        hotLoad.put("adapters-per-tenant", "1");
        hotLoad.put("popularity", "uniform");
        Map<String, String> manyLoad = new LinkedHashMap<>(common);
        manyLoad.put("tenants", Integer.toString(tenants));
        manyLoad.put("adapters-per-tenant", Integer.toString(perTenant));
        manyLoad.put("popularity", popularity);
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        List<URI> metrics = List.of(URI.create(url + "/metrics"));
        Path gatling = dir.resolve("gatling");
        // the JIT needs both loads' paths (adapter paging included) before either is measured
        double warm = Math.min(seconds, 10);
        System.out.printf(Locale.ROOT, "warm-up: each load for %.0f s (not measured)%n", warm);
        GatlingRun.run(LoadSpec.of(hotLoad).withSeconds(warm), gatling, "warmup-hot", true);
        GatlingRun.run(LoadSpec.of(manyLoad).withSeconds(warm), gatling, "warmup-many", true);
        List<Run> runs = new ArrayList<>();
        for (int round = 1; round <= rounds; round++) {
            for (String load : List.of("hot", "many")) {
                LoadSpec s = LoadSpec.of(load.equals("hot") ? hotLoad : manyLoad);
                MetricsSnapshot before = MetricsSnapshot.scrape(http, metrics);
                GatlingRun.Result r = GatlingRun.run(s, gatling, load + "-" + round, true);
                MetricsSnapshot delta = MetricsSnapshot.scrape(http, metrics).minus(before);
                StepResult step = StepResult.of(Double.NaN, RequestSample.read(r.samples()), delta, r.report());
                Run run = new Run(load, round, step, step.hostLoads() / seconds, step.deviceLoads() / seconds);
                runs.add(run);
                System.out.println(line(run));
            }
        }
        return runs;
    }

    static String line(Run r) {
        StepResult s = r.step();
        return String.format(Locale.ROOT, "%-4s round %d: %5d requests, %3d failed, %6.2f req/s, %8.1f output tok/s, p99 TTFT %.3f s, p99 TPOT %.4f s, batch %.1f, adapter loads/s: device %.2f, host %.2f",
            r.load(), r.round(), s.requests(), s.errors(), s.achievedRate(), s.outputTokensPerSecond(), s.ttftP99(), s.tpotP99(),
            s.meanBatch(), r.deviceLoadsPerSecond(), r.hostLoadsPerSecond());
    }

    /** Mean over the rounds of one load's value. */
    static double mean(List<Run> runs, String load, java.util.function.ToDoubleFunction<Run> f) {
        return runs.stream().filter(r -> r.load().equals(load)).mapToDouble(f).average().orElse(Double.NaN);
    }

    static String summary(List<Run> runs) {
        double hotTok = mean(runs, "hot", r -> r.step().outputTokensPerSecond());
        double manyTok = mean(runs, "many", r -> r.step().outputTokensPerSecond());
        double hotReq = mean(runs, "hot", r -> r.step().achievedRate());
        double manyReq = mean(runs, "many", r -> r.step().achievedRate());
        return String.format(Locale.ROOT,
            "many / hot throughput: %.2f (output tokens/s %.1f / %.1f; requests/s %.2f / %.2f; goal >= 0.85); p99 TTFT %.3f s many, %.3f s hot; adapter loads/s with many: device %.2f, host %.2f",
            manyTok / hotTok, manyTok, hotTok, manyReq, hotReq,
            mean(runs, "many", r -> r.step().ttftP99()), mean(runs, "hot", r -> r.step().ttftP99()),
            mean(runs, "many", Run::deviceLoadsPerSecond), mean(runs, "many", Run::hostLoadsPerSecond));
    }

    private Path report(Path dir, List<Run> runs, double uploadS, int perTenant) throws IOException {
        StringBuilder md = new StringBuilder("# Many adapters: throughput with ").append(adapters).append(" adapters against ").append(hot)
            .append(" always-hot ones\n\n");
        md.append(String.format(Locale.ROOT, "One gateway on the demo model; %d tenants with %d uploaded rank-%d adapters each (%d in all, uploaded through `POST /v1/adapters` in %.1f s). "
            + "Closed model: %d users, %.0f s per run, prompts %s, outputs %s. `hot`: %d adapters, one per tenant, uniform; `many`: all %d, %s.%n%n",
            tenants, perTenant, rank, adapters, uploadS, concurrency, seconds, promptLen, outputLen, hot, adapters, popularity));
        md.append("| load | round | requests | failed | req/s | output tok/s | p99 TTFT s | p99 TPOT s | mean batch | device loads/s | host loads/s |\n");
        md.append("|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (Run r : runs) {
            StepResult s = r.step();
            md.append(String.format(Locale.ROOT, "| %s | %d | %d | %d | %.2f | %.1f | %.3f | %.4f | %.1f | %.2f | %.2f |%n", r.load(), r.round(),
                s.requests(), s.errors(), s.achievedRate(), s.outputTokensPerSecond(), s.ttftP99(), s.tpotP99(), s.meanBatch(),
                r.deviceLoadsPerSecond(), r.hostLoadsPerSecond()));
        }
        md.append("\n**").append(summary(runs)).append("**\n\n");
        md.append("Device loads: adapters paged into a device slot (from host memory); host loads: adapters read from disk into the host tier "
            + "(`lora_gateway_adapter_cache_loads_total{tier}` deltas). Client-side p99s from streamed requests (Gatling's SSE timings).\n");
        Path page = dir.resolve("many-adapters.md");
        Files.writeString(page, md);
        return page;
    }

    private static Path writeKeys(Path file, int tenants, int perTenant) throws IOException {
        ObjectNode root = JSON.createObjectNode();
        ArrayNode ts = root.putArray("tenants");
        for (int i = 0; i < tenants; i++) {
            ObjectNode t = ts.addObject();
            t.put("id", "t" + i);
            t.putArray("keys").add(key(i));
            t.put("max_adapters", perTenant);
        }
        Files.writeString(file, JSON.writeValueAsString(root));
        return file;
    }

    static String key(int tenant) {
        return "sk-load-t" + tenant;
    }

    /** Tenant i's adapters t<i>-a<j> from {@code adapters/extra-<i·perTenant + j>}, four uploads at a time. */
    private static void upload(URI url, Path adapterDirs, int tenants, int perTenant) throws Exception {
        HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            List<Future<?>> done = new ArrayList<>();
            for (int t = 0; t < tenants; t++) {
                for (int a = 0; a < perTenant; a++) {
                    int tenant = t;
                    String name = "t" + t + "-a" + a;
                    Path files = adapterDirs.resolve("extra-" + (t * perTenant + a));
                    done.add(pool.submit(() -> {
                        uploadOne(http, url, key(tenant), name, files);
                        return null;
                    }));
                }
            }
            for (Future<?> f : done) f.get(120, TimeUnit.SECONDS);
        } finally {
            pool.shutdownNow();
        }
    }

    static void uploadOne(HttpClient http, URI url, String key, String name, Path files) throws IOException, InterruptedException {
        String boundary = "lora-load-" + UUID.randomUUID();
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        part(body, boundary, "name", null, name.getBytes(StandardCharsets.UTF_8));
        part(body, boundary, "adapter_config", "adapter_config.json", Files.readAllBytes(files.resolve("adapter_config.json")));
        part(body, boundary, "adapter_model", "adapter_model.safetensors", Files.readAllBytes(files.resolve("adapter_model.safetensors")));
        body.write(("--" + boundary + "--\r\n").getBytes(StandardCharsets.US_ASCII));
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(url + "/v1/adapters"))
            .header("Authorization", "Bearer " + key).header("Content-Type", "multipart/form-data; boundary=" + boundary)
            .timeout(Duration.ofSeconds(60)).POST(HttpRequest.BodyPublishers.ofByteArray(body.toByteArray())).build(),
            HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() != 201)
            throw new IllegalStateException("upload of " + name + " answered " + r.statusCode() + ": " + r.body());
    }

    private static void part(ByteArrayOutputStream body, String boundary, String field, String filename, byte[] content) throws IOException {
        String head = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + field + "\""
            + (filename == null ? "" : "; filename=\"" + filename + "\"\r\nContent-Type: application/octet-stream") + "\r\n\r\n";
        body.write(head.getBytes(StandardCharsets.UTF_8));
        body.write(content);
        body.write("\r\n".getBytes(StandardCharsets.US_ASCII));
    }

    private static void deleteTree(Path p) {
        try (var s = Files.walk(p)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        } catch (IOException ignored) {
            // a temp folder left behind is harmless
        }
    }
}
