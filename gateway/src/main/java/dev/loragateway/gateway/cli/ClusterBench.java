package dev.loragateway.gateway.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * {@code bench cluster}: placement policies compared on real {@code serve} processes, and the cost of
 * one forwarding hop.
 *
 * <p><b>Per policy</b> a fresh {@link LocalCluster} of {@code nodes} nodes, every node started with
 * that {@code --placement}; all load enters node-0 (the front node), so its policy places every
 * request. {@code clients} closed-loop clients send {@code requests} streamed completions between
 * them, request {@code i} on model {@code i mod (1 + adapters)} (the base model, then each adapter
 * the nodes load with {@code --lora-modules}), greedy, up to {@code tokens} tokens. One row:
 * output tokens/s over the phase's wall time (tokens from each stream's usage chunk), time to the
 * first SSE chunk at p50 and p99 (nearest rank), nodes busy (nodes whose engine started at least
 * one of the requests: each node's {@code lora_gateway_engine_time_to_first_token_seconds_count}
 * before and after), the requests each node ran, and node-0's
 * {@code lora_gateway_cluster_requests_forwarded_total} for the phase.
 *
 * <p><b>Forwarding overhead</b> at concurrency 1, on a set whose nodes consolidate (the consolidate
 * set when that policy is benched, else a 2-node one): with every node idle, consolidate places a
 * base-model request on the busiest node with room, ties broken by node id, i.e. on node-0,
 * whichever node it enters. So the same request sent to node-0 runs there directly and sent to
 * node-1 is forwarded to node-0: the same engine computes both, and the difference in time to the
 * first chunk is the hop (placement, the internal HTTP call, the relay of the first token). Pairs
 * alternate which goes first, so drift hits both sides alike; the overhead is each pair's
 * difference, at p50 and p99. The counters check the premise: node-1 must have forwarded every
 * via-front request and node-0 run all of them, else the output says so.
 */
final class ClusterBench {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern TTFT_COUNT =
        Pattern.compile("(?m)^lora_gateway_engine_time_to_first_token_seconds_count\\{[^}]*tenant=\"default\"[^}]*} (\\S+)");
    private static final Pattern FORWARDED = Pattern.compile("(?m)^lora_gateway_cluster_requests_forwarded_total (\\S+)");
    static final String BASE_ID = "base";
    private static final int START_SECONDS = 120;
    private static final int WARMUP_PAIRS = 4;
    private static final String HEADER =
        "| policy | requests | failed | output tokens/s | TTFT p50 ms | TTFT p99 ms | nodes busy | requests per node | forwarded |";

    /** What {@code bench cluster} runs; checked by the command. */
    record Options(int nodes, List<String> policies, int clients, int requests, int tokens, int maxBatch, int warmup,
                   int pairs, int heapMb, Path model, Path workDir) {
    }

    /** One policy's row. */
    record Row(String policy, int requests, int failed, double tokensPerSecond, double ttftP50, double ttftP99, int busy,
               long[] perNode, long forwarded) {
    }

    /** The forwarding overhead: TTFT direct, via the front node, and their per-pair difference (ms); premise checks. */
    record Overhead(int nodes, int pairs, double[] direct, double[] via, double[] diff, long forwarded, long ranOnNode0) {
    }

    private final Options o;
    private final List<String> adapters;
    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(5)).build();

    /** @param adapters NAME=DIR entries for {@code --lora-modules} (may be empty: base model only) */
    ClusterBench(Options o, List<String> adapters) {
        this.o = o;
        this.adapters = adapters;
    }

    /** The adapters of a model directory: each {@code DIR/adapters/NAME} holding an {@code adapter_config.json}, by name. */
    static List<String> adaptersOf(Path model) throws IOException {
        Path dir = model.resolve("adapters");
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(d -> Files.isRegularFile(d.resolve("adapter_config.json"))).sorted(Comparator.comparing(Path::toString))
                .map(d -> d.getFileName() + "=" + d.toAbsolutePath()).toList();
        }
    }

    /** Runs every policy and the overhead measurement, printing Markdown to {@code out}. */
    void run(PrintStream out) throws Exception {
        List<String> models = new ArrayList<>(List.of(BASE_ID));
        adapters.forEach(a -> models.add(a.substring(0, a.indexOf('='))));
        out.printf(Locale.ROOT, "bench cluster: %d serve processes on 127.0.0.1 (-Xmx%dm, --max-batch %d, backend cpu), model %s, "
                + "%d clients, %d requests of up to %d tokens over %s; all load enters node-0%n%n", o.nodes(), o.heapMb(), o.maxBatch(),
            o.model(), o.clients(), o.requests(), o.tokens(), String.join(", ", models));
        out.println(HEADER);
        out.println("|---|---|---|---|---|---|---|---|---|");
        Overhead overhead = null;
        int set = 0;
        for (String policy : o.policies()) {
            try (LocalCluster c = LocalCluster.start(o.workDir().resolve("set-" + set++), o.nodes(), o.heapMb(), serveArgs(policy),
                START_SECONDS)) {
                printRow(out, load(c, policy, models)); // as each policy finishes: a long run shows its progress
                if (overhead == null && policy.equals("consolidate")) {
                    overhead = overhead(c);
                }
            }
        }
        if (overhead == null) {
            try (LocalCluster c = LocalCluster.start(o.workDir().resolve("set-overhead"), 2, o.heapMb(), serveArgs("consolidate"),
                START_SECONDS)) {
                overhead = overhead(c);
            }
        }
        out.println();
        printOverhead(out, overhead);
    }

    private List<String> serveArgs(String policy) {
        List<String> a = new ArrayList<>(List.of("--model", o.model().toString(), "--model-id", BASE_ID, "--placement", policy,
            "--max-batch", String.valueOf(o.maxBatch())));
        for (String m : adapters) {
            a.add("--lora-modules");
            a.add(m);
        }
        return a;
    }

    /** The policy's phase: warm-up through node-0, then the measured closed loop. */
    private Row load(LocalCluster c, String policy, List<String> models) throws Exception {
        String front = c.nodes().get(0).url();
        for (int i = 0; i < o.warmup(); i++) {
            stream(front, models.get(i % models.size()), "Warm-up " + i + ": the cluster", o.tokens());
        }
        long[] before = executed(c);
        long forwardedBefore = counter(front, FORWARDED);
        AtomicInteger next = new AtomicInteger();
        Result[] results = new Result[o.requests()];
        ExecutorService pool = Executors.newFixedThreadPool(o.clients());
        long t0 = System.nanoTime();
        try {
            List<Future<?>> clients = new ArrayList<>();
            for (int k = 0; k < o.clients(); k++) {
                clients.add(pool.submit(() -> {
                    for (int i; (i = next.getAndIncrement()) < o.requests(); ) {
                        results[i] = stream(front, models.get(i % models.size()), "Request " + i + ": tell the cluster a story", o.tokens());
                    }
                    return null;
                }));
            }
            for (Future<?> f : clients) {
                f.get();
            }
        } finally {
            pool.shutdownNow();
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        long[] after = executed(c);
        long[] perNode = new long[after.length];
        int busy = 0;
        for (int i = 0; i < after.length; i++) {
            perNode[i] = after[i] - before[i];
            busy += perNode[i] > 0 ? 1 : 0;
        }
        long tokens = 0;
        int failed = 0;
        List<Double> ttft = new ArrayList<>();
        for (Result r : results) {
            if (r.error() != null) {
                failed++;
                continue;
            }
            tokens += r.tokens();
            ttft.add(r.ttftMs());
        }
        double[] t = ttft.stream().mapToDouble(Double::doubleValue).toArray();
        return new Row(policy, o.requests(), failed, tokens / seconds, percentile(t, 50), percentile(t, 99), busy, perNode,
            counter(front, FORWARDED) - forwardedBefore);
    }

    /** Interleaved direct / via-node-1 pairs of one base-model request, at concurrency 1 (see the class comment). */
    private Overhead overhead(LocalCluster c) throws Exception {
        String direct = c.nodes().get(0).url();
        String via = c.nodes().get(1).url();
        // unmeasured pairs first, twice as many as measured: the forwarding path (HTTP client, internal
        // listener, relays) is JIT-compiled only after a few hundred requests, and a cold one adds
        // several ms that a long-running gateway never pays (measured: ~10 ms cold, ~1.3 ms warm in one JVM)
        for (int i = 0; i < Math.max(WARMUP_PAIRS, 2 * o.pairs()); i++) {
            stream(direct, BASE_ID, "Overhead probe", 2);
            stream(via, BASE_ID, "Overhead probe", 2);
        }
        long forwardedBefore = counter(via, FORWARDED);
        long ranBefore = executed(c)[0];
        double[] d = new double[o.pairs()];
        double[] v = new double[o.pairs()];
        double[] diff = new double[o.pairs()];
        for (int i = 0; i < o.pairs(); i++) {
            Result a;
            Result b;
            if (i % 2 == 0) {
                a = stream(direct, BASE_ID, "Overhead probe", 2);
                b = stream(via, BASE_ID, "Overhead probe", 2);
            } else {
                b = stream(via, BASE_ID, "Overhead probe", 2);
                a = stream(direct, BASE_ID, "Overhead probe", 2);
            }
            if (a.error() != null || b.error() != null) {
                throw new IllegalStateException("overhead pair " + i + " failed: " + (a.error() != null ? a.error() : b.error()));
            }
            d[i] = a.ttftMs();
            v[i] = b.ttftMs();
            diff[i] = v[i] - d[i];
        }
        return new Overhead(c.nodes().size(), o.pairs(), d, v, diff, counter(via, FORWARDED) - forwardedBefore,
            executed(c)[0] - ranBefore);
    }

    /** One streamed request's outcome: time to its first chunk (ms), completion tokens, or why it failed. */
    record Result(double ttftMs, long tokens, String error) {
    }

    /** Sends one streamed greedy completion and reads it to the end. */
    private Result stream(String url, String model, String prompt, int maxTokens) {
        ObjectNode body = JSON.createObjectNode().put("model", model).put("prompt", prompt).put("max_tokens", maxTokens)
            .put("temperature", 0).put("stream", true);
        body.putObject("stream_options").put("include_usage", true);
        HttpRequest req = HttpRequest.newBuilder(URI.create(url + "/v1/completions")).timeout(Duration.ofSeconds(300))
            .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body.toString())).build();
        long t0 = System.nanoTime();
        try {
            HttpResponse<InputStream> r = http.send(req, HttpResponse.BodyHandlers.ofInputStream());
            try (BufferedReader lines = new BufferedReader(new InputStreamReader(r.body(), StandardCharsets.UTF_8))) {
                if (r.statusCode() != 200) {
                    StringBuilder b = new StringBuilder();
                    lines.lines().forEach(b::append);
                    return new Result(0, 0, "HTTP " + r.statusCode() + ": " + b);
                }
                double ttft = -1;
                long tokens = -1;
                boolean done = false;
                for (String line; (line = lines.readLine()) != null; ) {
                    if (!line.startsWith("data: ")) {
                        continue;
                    }
                    if (ttft < 0) {
                        ttft = (System.nanoTime() - t0) / 1e6;
                    }
                    if (line.equals("data: [DONE]")) {
                        done = true;
                        continue;
                    }
                    JsonNode usage = JSON.readTree(line.substring(6)).path("usage");
                    if (usage.has("completion_tokens")) {
                        tokens = usage.get("completion_tokens").asLong();
                    }
                }
                if (!done || tokens < 0) {
                    return new Result(0, 0, "the stream ended without " + (done ? "a usage chunk" : "[DONE]"));
                }
                return new Result(ttft, tokens, null);
            }
        } catch (IOException e) {
            return new Result(0, 0, e.toString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return new Result(0, 0, "interrupted");
        }
    }

    /** Requests each node's engine has started (its TTFT count for tenant {@code default}), node-0 first. */
    private long[] executed(LocalCluster c) throws Exception {
        long[] n = new long[c.nodes().size()];
        for (int i = 0; i < n.length; i++) {
            n[i] = counter(c.nodes().get(i).url(), TTFT_COUNT);
        }
        return n;
    }

    /** The sum of {@code sample}'s values in {@code url/metrics} (0 when absent). */
    private long counter(String url, Pattern sample) throws Exception {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(url + "/metrics")).timeout(Duration.ofSeconds(10)).build(),
            HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() != 200) {
            throw new IllegalStateException(url + "/metrics answered " + r.statusCode());
        }
        long sum = 0;
        Matcher m = sample.matcher(r.body());
        while (m.find()) {
            sum += (long) Double.parseDouble(m.group(1));
        }
        return sum;
    }

    /** The nearest-rank percentile (the smallest value with at least p% of the values at or below it); NaN when empty. */
    static double percentile(double[] values, double p) {
        if (values.length == 0) {
            return Double.NaN;
        }
        double[] s = values.clone();
        Arrays.sort(s);
        int rank = (int) Math.ceil(p / 100 * s.length);
        return s[Math.max(0, Math.min(s.length, rank) - 1)];
    }

    private static void printRow(PrintStream out, Row r) {
        StringBuilder per = new StringBuilder();
        for (long n : r.perNode()) {
            per.append(per.length() == 0 ? "" : " / ").append(n);
        }
        out.printf(Locale.ROOT, "| %s | %d | %d | %.1f | %.1f | %.1f | %d of %d | %s | %d |%n", r.policy(), r.requests(), r.failed(),
            r.tokensPerSecond(), r.ttftP50(), r.ttftP99(), r.busy(), r.perNode().length, per, r.forwarded());
        out.flush();
    }

    private static void printOverhead(PrintStream out, Overhead h) {
        out.printf(Locale.ROOT, "Forwarding overhead (%d nodes, consolidate, concurrency 1, %d interleaved pairs of one base-model request): "
            + "on an idle cluster consolidate places on node-0 whichever node a request enters, so 'direct' is the request sent to "
            + "node-0 (runs there) and 'via node-1' the same request sent to node-1 (forwarded to node-0); overhead is each pair's "
            + "difference in time to the first SSE chunk.%n%n", h.nodes(), h.pairs());
        out.println("| path | TTFT p50 ms | TTFT p99 ms |");
        out.println("|---|---|---|");
        out.printf(Locale.ROOT, "| direct (node-0) | %.2f | %.2f |%n", percentile(h.direct(), 50), percentile(h.direct(), 99));
        out.printf(Locale.ROOT, "| via node-1 (forwarded to node-0) | %.2f | %.2f |%n", percentile(h.via(), 50), percentile(h.via(), 99));
        out.printf(Locale.ROOT, "| overhead (via − direct, per pair) | %.2f | %.2f |%n", percentile(h.diff(), 50), percentile(h.diff(), 99));
        out.println();
        boolean premise = h.forwarded() == h.pairs() && h.ranOnNode0() == 2L * h.pairs();
        out.printf(Locale.ROOT, "%s: node-1 forwarded %d of %d via-node-1 requests; node-0 ran %d of %d.%n",
            premise ? "checked" : "WARNING, the measurement's premise did not hold", h.forwarded(), h.pairs(), h.ranOnNode0(), 2 * h.pairs());
    }
}
