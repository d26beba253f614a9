package dev.loragateway.loadtests;

import static io.gatling.javaapi.core.CoreDsl.StringBody;
import static io.gatling.javaapi.core.CoreDsl.atOnceUsers;
import static io.gatling.javaapi.core.CoreDsl.constantConcurrentUsers;
import static io.gatling.javaapi.core.CoreDsl.doIfOrElse;
import static io.gatling.javaapi.core.CoreDsl.exec;
import static io.gatling.javaapi.core.CoreDsl.group;
import static io.gatling.javaapi.core.CoreDsl.jsonPath;
import static io.gatling.javaapi.core.CoreDsl.regex;
import static io.gatling.javaapi.core.CoreDsl.scenario;
import static io.gatling.javaapi.http.HttpDsl.http;
import static io.gatling.javaapi.http.HttpDsl.sse;
import static io.gatling.javaapi.http.HttpDsl.status;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.scheduler.workload.TraceRequest;
import io.gatling.http.action.sse.SseInboundMessage;
import io.gatling.javaapi.core.ChainBuilder;
import io.gatling.javaapi.core.PopulationBuilder;
import io.gatling.javaapi.core.ScenarioBuilder;
import io.gatling.javaapi.core.Session;
import io.gatling.javaapi.core.Simulation;
import io.gatling.javaapi.http.HttpProtocolBuilder;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * The gateway under the load of a {@link LoadSpec} (read from {@code lora.load.*} system properties):
 * each virtual user sends one trace request to {@code /v1/completions} or {@code /v1/chat/completions},
 * streamed or not, inside a group named {@code CLASS TENANT} (popularity class hot/warm/cold/even),
 * so Gatling's report shows every tenant and class apart.
 *
 * <p>Open model: every request of the trace that arrives within {@code seconds} is one user, started
 * at once and pausing until its arrival time, so the arrivals are the trace's own (constant, Poisson,
 * ramp: the same instants the simulator is given). Closed model: {@code concurrency} users for
 * {@code seconds}, each replaced by the next trace request when it ends.
 *
 * <p>Checks: status 200; streamed: a chunk with text ({@code ttft}, Gatling's time to it is the time
 * to first token) and {@code [DONE]} (regex: the SSE data is JSON text inside Gatling's message);
 * unstreamed: non-empty text and {@code usage}. Each request is also written to
 * {@code lora.samples} (a {@code requests.jsonl}, see {@link RequestSample}) with its time to first
 * token, time per output token, latency and output tokens, from the SSE messages' arrival times.
 */
public class GatewaySimulation extends Simulation {
    /** A chunk carrying text: completions' {@code "text":"x…"} or chat's {@code "content":"x…"} (escaped inside Gatling's message). */
    private static final String TEXT_CHUNK = "(?:text|content)\\\\?\"\\s*:\\s*\\\\?\"(?!\\\\?\")";
    private static final Pattern TEXT = Pattern.compile("\"(?:text|content)\"\\s*:\\s*\"(?!\")");
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Duration TIMEOUT = Duration.ofSeconds(120);

    private final LoadSpec spec = LoadSpec.fromProperties(System.getProperties());
    private final BufferedWriter out;

    public GatewaySimulation() {
        String target = System.getProperty("lora.samples", "target/gatling/requests.jsonl");
        try {
            Path file = Path.of(target);
            if (file.getParent() != null) Files.createDirectories(file.getParent());
            out = Files.newBufferedWriter(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + target, e);
        }
        for (String tenant : tenantsOf(spec))
            if (!spec.keys().isEmpty() && !spec.keys().containsKey(tenant))
                throw new IllegalArgumentException("keys: '" + spec.keysFile() + "' has no key for tenant '" + tenant
                    + "' of the workload (tenants are t0..t" + (spec.workload().tenants() - 1) + ")");
        HttpProtocolBuilder protocol = http.baseUrl(spec.url().toString())
            .contentTypeHeader("application/json")
            .sseUnmatchedInboundMessageBufferSize(65_536)
            .shareConnections();
        ScenarioBuilder scn;
        PopulationBuilder population;
        if (spec.concurrency() == 0) {
            List<Map<String, Object>> records = new ArrayList<>();
            Iterator<TraceRequest> trace = spec.workload().trace();
            for (long i = 0; ; i++) {
                TraceRequest r = trace.next();
                if (r.arrivalSeconds() >= spec.seconds() && i > 0) break;
                records.add(Payloads.record(spec, i, r));
            }
            scn = scenario("open " + spec.workload().arrivals().spec() + " at " + spec.workload().rate() + "/s")
                .feed(records.iterator())
                .pause(s -> Duration.ofMillis(s.getLong("arrivalMs")))
                .exec(request());
            population = scn.injectOpen(atOnceUsers(records.size()));
        } else {
            Iterator<TraceRequest> trace = spec.workload().trace();
            long[] index = {0};
            Iterator<Map<String, Object>> feeder = new Iterator<>() {
                public boolean hasNext() { return true; }
                public synchronized Map<String, Object> next() { return Payloads.record(spec, index[0]++, trace.next()); }
            };
            scn = scenario("closed " + spec.concurrency() + " users").feed(feeder).exec(request());
            population = scn.injectClosed(constantConcurrentUsers(spec.concurrency()).during(Duration.ofMillis(Math.round(spec.seconds() * 1000))));
        }
        setUp(population).protocols(protocol);
    }

    private static List<String> tenantsOf(LoadSpec spec) {
        List<String> t = new ArrayList<>();
        for (int i = 0; i < spec.workload().tenants(); i++) t.add("t" + i);
        return t;
    }

    /** One request, streamed or not, in its class/tenant group, then written to the samples file. */
    private ChainBuilder request() {
        var connect = sse("#{api} stream").post("#{path}").body(StringBody("#{body}"));
        if (!spec.keys().isEmpty()) connect = connect.header("Authorization", this::authorization);
        ChainBuilder streamed = exec(connect
                .await(TIMEOUT).on(sse.checkMessage("ttft").matching(regex(TEXT_CHUNK)).check(regex(TEXT_CHUNK))))
            .exec(s -> s.set("firstMs", System.currentTimeMillis()))
            .exec(sse("#{api} stream").setCheck().await(TIMEOUT).on(sse.checkMessage("done").matching(regex("\\[DONE\\]")).check(regex("\\[DONE\\]"))))
            .exec(s -> s.set("endMs", System.currentTimeMillis()))
            .exec(sse.processUnmatchedMessages((messages, s) -> s.set("messages", messages)))
            .exec(sse("#{api} stream").close());
        var post = http("#{api}").post("#{path}").body(StringBody("#{body}"));
        if (!spec.keys().isEmpty()) post = post.header("Authorization", this::authorization);
        ChainBuilder whole = exec(post
            .check(status().is(200))
            .check(regex("\"(?:text|content)\"\\s*:\\s*\"(?!\")").exists())
            .check(jsonPath("$.usage.completion_tokens").ofInt().saveAs("outputTokens")))
            .exec(s -> s.set("endMs", System.currentTimeMillis()));
        return exec(s -> s.set("startMs", System.currentTimeMillis()).remove("endMs").remove("firstMs")
                .remove("messages").remove("outputTokens"))
            .group(s -> s.getString("class") + " " + s.getString("tenant"))
            .on(doIfOrElse(s -> s.getBoolean("stream")).then(streamed).orElse(whole))
            .exec(s -> {
                record(s);
                return s;
            });
    }

    /** {@code Bearer KEY} of the request's tenant (only with a keys file: without one no header is sent). */
    private String authorization(Session s) {
        return "Bearer " + spec.keys().get(s.getString("tenant"));
    }

    private void record(Session s) {
        long start = s.getLong("startMs");
        boolean stream = s.getBoolean("stream");
        boolean ok = !s.isFailed() && s.contains("endMs");
        double e2e = (s.contains("endMs") ? s.getLong("endMs") : System.currentTimeMillis()) - start;
        double ttft = Double.NaN;
        double tpot = Double.NaN;
        int tokens = 0;
        if (stream) {
            if (s.contains("firstMs")) ttft = s.getLong("firstMs") - start;
            long last = -1;
            List<SseInboundMessage> messages = s.contains("messages") ? s.getList("messages") : List.of();
            for (SseInboundMessage m : messages) {
                String data = dataOf(m.message());
                if (data == null) continue;
                if (TEXT.matcher(data).find()) last = m.timestamp();
                if (data.contains("\"usage\"")) tokens = usage(data);
            }
            if (ok && tokens >= 2 && last >= 0 && !Double.isNaN(ttft)) tpot = Math.max(0, last - (start + ttft)) / (tokens - 1);
        } else if (ok) {
            tokens = s.getInt("outputTokens");
        }
        RequestSample r = new RequestSample(s.getLong("index"), s.getString("tenant"), s.getString("class"),
            s.getString("model"), s.getString("api"), stream, ok, start, ttft, tpot, e2e, ok ? tokens : 0);
        synchronized (out) {
            try {
                out.write(r.toJson());
                out.newLine();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    /** The {@code data} of one Gatling SSE message ({@code {"data": ...}}: a JSON chunk inline, other text as a string), or null. */
    private static String dataOf(String message) {
        try {
            JsonNode m = JSON.readTree(message);
            JsonNode d = m.get("data");
            return d == null || d.isNull() ? null : d.isTextual() ? d.asText() : d.toString();
        } catch (IOException e) {
            return message;
        }
    }

    private static int usage(String data) {
        try {
            return JSON.readTree(data).path("usage").path("completion_tokens").asInt(0);
        } catch (IOException e) {
            return 0;
        }
    }

    @Override
    public void after() {
        synchronized (out) {
            try {
                out.close();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
