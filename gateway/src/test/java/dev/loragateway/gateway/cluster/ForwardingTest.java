package dev.loragateway.gateway.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.Generator;
import dev.loragateway.batcher.InferenceExecutor;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.LocalExecutor;
import dev.loragateway.batcher.Sampler;
import dev.loragateway.batcher.SamplingParams;
import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.gateway.http.ApiServer;
import dev.loragateway.gateway.http.SseEvents;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.cluster.ClusterView;
import dev.loragateway.scheduler.placement.Placements;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanContext;
import io.opentelemetry.api.trace.TraceFlags;
import io.opentelemetry.api.trace.TraceState;
import io.vertx.core.Vertx;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two "nodes" in one JVM, each a real engine over the demo model: node B's {@link InternalApi} on
 * 127.0.0.1, node A's {@link ClusterExecutor} with a fixed view in which A is full and B has room,
 * so placement sends every request to B. What a forwarded request returns must equal what A's own
 * engine returns for it, token for token and logprob for logprob.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class ForwardingTest {
    private static final byte[] SECRET = "test cluster secret".getBytes(StandardCharsets.UTF_8);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static final int MAX_LEN = 256;

    @TempDir
    static Path dir;
    static LlamaModel model;
    static TextTokenizer tokenizer;
    static Engine engineA;
    static Engine engineB;
    static LocalExecutor localA;
    static Vertx vertx;
    static InternalApi apiB;
    static String addressB;
    static RemoteExecutors remotes;
    static ClusterExecutor clusterA;

    /**
     * A's state: no batch slot free. B's: plenty of room. Published "forever after" (updatedMillis
     * at its largest), so what A has placed on B is never charged on top of it: B's state here is
     * what the test says it is.
     */
    static final class FixedView implements ClusterView {
        volatile List<NodeState> nodes;
        final List<Runnable> listeners = new java.util.concurrent.CopyOnWriteArrayList<>();
        volatile Set<String> members = Set.of("a", "b");

        FixedView(String addressOfB) {
            nodes = List.of(
                new NodeState("a", "http://127.0.0.1:1", "cpu", 8, 0, 8, 1000, 1000, 16, Set.of(), Set.of(), 1, false, Long.MAX_VALUE),
                new NodeState("b", addressOfB, "cpu", 0, 0, 64, 1000, 1000, 16, Set.of(), Set.of(), 1, false, Long.MAX_VALUE));
        }

        @Override
        public String localNodeId() {
            return "a";
        }

        @Override
        public List<NodeState> nodes() {
            return nodes.stream().filter(n -> members.contains(n.nodeId())).toList();
        }

        @Override
        public Set<String> memberIds() {
            return members;
        }

        @Override
        public void addListener(Runnable onChange) {
            listeners.add(onChange);
        }

        /** New published states, as the status board would report them. */
        void states(NodeState... states) {
            nodes = List.of(states);
            listeners.forEach(Runnable::run);
        }

        /** Member {@code id} leaves, as Hazelcast's membership listener would report it. */
        void leave(String id) {
            Set<String> m = new java.util.HashSet<>(members);
            m.remove(id);
            members = m;
            listeners.forEach(Runnable::run);
        }
    }

    @BeforeAll
    static void start() throws Exception {
        DemoModel.write(dir, DemoModel.Options.tiny());
        model = LlamaModel.load(dir);
        tokenizer = TextTokenizer.load(dir);
        engineA = new Engine(model, new CpuBackend(1), 64);
        engineB = new Engine(LlamaModel.load(dir), new CpuBackend(1), 64); // a node of its own: its own copy of the weights
        localA = new LocalExecutor(engineA);
        vertx = Vertx.vertx();
        apiB = new InternalApi(vertx, new LocalExecutor(engineB), SECRET);
        addressB = "http://127.0.0.1:" + apiB.listen("127.0.0.1", 0).await();
        remotes = new RemoteExecutors(model.config(), SECRET, 64);
        clusterA = new ClusterExecutor(localA, new FixedView(addressB), Placements.defaultPlacement(), remotes);
    }

    @AfterAll
    static void stop() {
        remotes.close();
        vertx.close().await();
        engineA.close();
        engineB.close();
    }

    /** What one choice received: tokens, logprobs, and its finish. */
    static final class Recorded implements Generator.TokenSink {
        final List<Integer> tokens = new ArrayList<>();
        final List<Sampler.Logprobs> logprobs = new ArrayList<>();
        final int stopAfter;

        Recorded(int stopAfter) {
            this.stopAfter = stopAfter;
        }

        @Override
        public synchronized boolean accept(int token, Sampler.Logprobs lp) {
            tokens.add(token);
            logprobs.add(lp);
            return tokens.size() < stopAfter;
        }

        /** Tokens, top tokens and finish as text (exact); logprobs, in order, apart (see {@link #assertSame}). */
        synchronized String describe(List<Float> floats) {
            StringBuilder b = new StringBuilder(tokens.toString());
            for (Sampler.Logprobs lp : logprobs) {
                if (lp == null) {
                    b.append(" -");
                    continue;
                }
                b.append(' ').append(lp.token()).append(Arrays.toString(lp.topTokens()));
                floats.add(lp.logprob());
                for (float f : lp.topLogprobs()) {
                    floats.add(f);
                }
            }
            return b.toString();
        }
    }

    /** Each choice's finish, tokens and top tokens; and every logprob, in order. */
    record Outcome(List<String> choices, List<Float> logprobs) {
    }

    /**
     * Tokens, top tokens and finishes equal; logprobs equal to within 1e-4. (The engine's float
     * results are not bit-reproducible from run to run in one JVM: measured, the same request on
     * the same engine differed in the last 1 to 10 ulps of its logprobs as the JIT compiled the
     * vector kernels. The wire itself carries floats bit for bit: {@link InternalWireTest}.)
     */
    static void assertSame(Outcome expected, Outcome actual) {
        assertEquals(expected.choices(), actual.choices());
        assertEquals(expected.logprobs().size(), actual.logprobs().size());
        for (int i = 0; i < expected.logprobs().size(); i++) {
            assertEquals(expected.logprobs().get(i), actual.logprobs().get(i), 1e-4, "logprob " + i);
        }
    }

    /** Two prompts × n = 2, each choice with {@code params(i)}; returns each choice's record and finish, in order. */
    static Outcome run(InferenceExecutor ex, List<SamplingParams> params, int stopAfter) throws Exception {
        return run(ex, params, stopAfter, new int[][] {{5, 9, 13, 2, 7}, {3, 3, 8, 21, 4, 11, 6}});
    }

    static Outcome run(InferenceExecutor ex, List<SamplingParams> params, int stopAfter, int[][] prompts) throws Exception {
        List<Recorded> recs = new ArrayList<>();
        List<InferenceExecutor.Prompt> ps = new ArrayList<>();
        int i = 0;
        for (int[] p : prompts) {
            List<InferenceExecutor.Choice> cs = new ArrayList<>();
            for (int c = 0; c < 2; c++) {
                Recorded r = new Recorded(stopAfter);
                recs.add(r);
                cs.add(new InferenceExecutor.Choice(params.get(i++), r));
            }
            ps.add(new InferenceExecutor.Prompt(p, cs));
        }
        List<List<CompletableFuture<Generator.Finish>>> fs = ex.submit(new InferenceExecutor.Work("req-" + i, "t1", null, ps, null));
        List<String> out = new ArrayList<>();
        List<Float> floats = new ArrayList<>();
        int k = 0;
        for (List<CompletableFuture<Generator.Finish>> perPrompt : fs) {
            for (CompletableFuture<Generator.Finish> f : perPrompt) {
                Generator.Finish finish = f.get(60, TimeUnit.SECONDS);
                out.add(finish + " " + recs.get(k++).describe(floats));
            }
        }
        return new Outcome(out, floats);
    }

    @Test
    void forwardedRequestsGiveWhatTheLocalEngineGives() throws Exception {
        List<SamplingParams> greedy = List.of(new SamplingParams(0, 1, 0, 12, 2), new SamplingParams(0, 1, 1, 9, 0),
            new SamplingParams(0, 1, 2, 12, -1), new SamplingParams(0, 1, 3, 5, 3));
        List<SamplingParams> seeded = List.of(new SamplingParams(0.9, 1, 42, 16, 2), new SamplingParams(0.9, 1, 43, 16, 2),
            new SamplingParams(1.3, 0.8, 44, 16, 1), new SamplingParams(1.3, 0.8, 45, 16, -1));
        for (List<SamplingParams> params : List.of(greedy, seeded)) {
            long forwardedBefore = clusterA.forwarded();
            long stepsA = engineA.steps();
            long stepsB = engineB.steps();
            Outcome remote = run(clusterA, params, Integer.MAX_VALUE);
            assertEquals(forwardedBefore + 1, clusterA.forwarded(), "the request went to B");
            assertEquals(stepsA, engineA.steps(), "A's engine ran nothing of a forwarded request");
            assertTrue(engineB.steps() > stepsB, "B's engine ran it");
            Outcome local = run(localA, params, Integer.MAX_VALUE);
            assertSame(local, remote);
        }
        // a sink that says stop ends its choice as a local engine does (STOP after its last accepted token)
        List<SamplingParams> longer = List.of(new SamplingParams(0, 1, 0, 40, 1), new SamplingParams(0.7, 1, 7, 40, 1),
            new SamplingParams(0, 1, 0, 40, -1), new SamplingParams(0.7, 1, 8, 40, -1));
        assertSame(run(localA, longer, 3), run(clusterA, longer, 3));
    }

    /**
     * Every forwarded stream arrives whole from its first token. Regression guard: the response's
     * handlers were once set from the submitting thread after the request went out, and once in
     * four runs of this class a stream lost its first 21 lines (it began with its 22nd token). The
     * race needs the submitting thread to stall, so this loop makes it likely, not certain.
     */
    @Test
    void noLineIsLostWhenTheStreamBeginsAtOnce() throws Exception {
        List<SamplingParams> params = List.of(SamplingParams.greedy(6), new SamplingParams(0.8, 1, 3, 6, -1),
            SamplingParams.greedy(6), new SamplingParams(0.8, 1, 4, 6, 0));
        Outcome local = run(localA, params, Integer.MAX_VALUE);
        for (int i = 0; i < 40; i++) {
            assertSame(local, run(clusterA, params, Integer.MAX_VALUE));
        }
        // what forwarding adds before the first token, on loopback: first-token latency, forwarded minus local
        long[] direct = new long[30];
        long[] forwarded = new long[30];
        for (int i = 0; i < 30; i++) {
            direct[i] = firstTokenNanos(localA);
            forwarded[i] = firstTokenNanos(clusterA);
        }
        Arrays.sort(direct);
        Arrays.sort(forwarded);
        System.err.printf("first token, p50 of 30 (greedy, 5-token prompt): local %.2f ms, forwarded %.2f ms%n",
            direct[15] / 1e6, forwarded[15] / 1e6);
    }

    private static long firstTokenNanos(InferenceExecutor ex) throws Exception {
        CompletableFuture<Long> first = new CompletableFuture<>();
        long t0 = System.nanoTime();
        var fs = ex.submit(new InferenceExecutor.Work("req-ttft", "t1", null, List.of(new InferenceExecutor.Prompt(new int[] {5, 9, 13, 2, 7},
            List.of(new InferenceExecutor.Choice(SamplingParams.greedy(1), (t, l) -> {
                first.complete(System.nanoTime() - t0);
                return true;
            })))), null));
        fs.get(0).get(0).get(30, TimeUnit.SECONDS);
        return first.get();
    }

    @Test
    void theTraceRequestIdTenantAndAdapterKeyReachTheExecutingNode() throws Exception {
        Vertx v = Vertx.vertx();
        try {
            List<InferenceExecutor.Work> seen = new ArrayList<>();
            LocalExecutor b = new LocalExecutor(engineB);
            InferenceExecutor recording = new InferenceExecutor() {
                @Override
                public List<List<CompletableFuture<Generator.Finish>>> submit(Work work) {
                    synchronized (seen) {
                        seen.add(work);
                    }
                    // the base model serves every request here: the adapter key is only recorded
                    return b.submit(new Work(work.requestId(), work.tenant(), null, work.prompts(), work.trace()));
                }

                @Override
                public dev.loragateway.batcher.ModelConfig config() {
                    return b.config();
                }

                @Override
                public String unhealthy(long stallNanos) {
                    return null;
                }
            };
            InternalApi api = new InternalApi(v, recording, SECRET);
            String address = "http://127.0.0.1:" + api.listen("127.0.0.1", 0).await();
            ClusterExecutor a = new ClusterExecutor(localA, new FixedView(address), Placements.defaultPlacement(), remotes);
            SpanContext parent = SpanContext.create("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", TraceFlags.getSampled(),
                TraceState.getDefault());
            io.opentelemetry.context.Context trace = io.opentelemetry.context.Context.root().with(Span.wrap(parent));
            AdapterKey key = AdapterKey.of("acme", "support-bot");
            List<List<CompletableFuture<Generator.Finish>>> fs = a.submit(new InferenceExecutor.Work("req-trace", "acme", key,
                List.of(new InferenceExecutor.Prompt(new int[] {7, 7, 7}, List.of(new InferenceExecutor.Choice(SamplingParams.greedy(3),
                    (t, l) -> true)))), trace));
            fs.get(0).get(0).get(30, TimeUnit.SECONDS);
            assertEquals(1, seen.size());
            InferenceExecutor.Work there = seen.get(0);
            assertEquals("req-trace", there.requestId());
            assertEquals("acme", there.tenant());
            assertEquals(key, there.adapter());
            SpanContext remote = Span.fromContext(there.trace()).getSpanContext();
            assertEquals(parent.getTraceId(), remote.getTraceId(), "the trace continues on the executing node");
            assertEquals(parent.getSpanId(), remote.getSpanId(), "under the front node's span");
            assertTrue(remote.isRemote() && remote.isSampled());
        } finally {
            v.close().await();
        }
    }

    @Test
    void aWrongOrMissingSecretIsRefusedAndNothingRuns() throws Exception {
        long steps = quietSteps(engineB);
        try (RemoteExecutors wrong = new RemoteExecutors(model.config(), "another secret".getBytes(StandardCharsets.UTF_8), 4)) {
            ClusterExecutor a = new ClusterExecutor(localA, new FixedView(addressB), Placements.defaultPlacement(), wrong);
            // B refuses the secret, so the request is placed again without B: here on A itself
            long stepsA = engineA.steps();
            List<SamplingParams> greedy = List.of(SamplingParams.greedy(4), SamplingParams.greedy(4), SamplingParams.greedy(4),
                SamplingParams.greedy(4));
            assertSame(run(localA, greedy, Integer.MAX_VALUE), run(a, greedy, Integer.MAX_VALUE));
            assertTrue(engineA.steps() > stepsA, "A ran it");
            assertEquals(0, a.forwarded());
            a.close();
        }
        String body = InternalWire.request("x", new InferenceExecutor.Work("r", "t1", null, List.of(new InferenceExecutor.Prompt(
            new int[] {1, 2, 3}, List.of(new InferenceExecutor.Choice(SamplingParams.greedy(4), (t, l) -> true)))), null)).toString();
        for (String header : new String[] {null, "", InternalWire.token(new byte[0]), InternalWire.token(SECRET).toUpperCase()}) {
            HttpRequest.Builder req = HttpRequest.newBuilder(URI.create(addressB + InternalWire.GENERATE))
                .POST(HttpRequest.BodyPublishers.ofString(body));
            if (header != null) {
                req.header(InternalWire.SECRET_HEADER, header);
            }
            HttpResponse<String> resp = HTTP.send(req.build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(401, resp.statusCode(), "secret header " + header);
            HttpRequest.Builder cancel = HttpRequest.newBuilder(URI.create(addressB + InternalWire.CANCEL))
                .POST(HttpRequest.BodyPublishers.ofString("{\"id\":\"x\",\"c\":0}"));
            if (header != null) {
                cancel.header(InternalWire.SECRET_HEADER, header);
            }
            assertEquals(401, HTTP.send(cancel.build(), HttpResponse.BodyHandlers.ofString()).statusCode());
        }
        Thread.sleep(100); // an engine that had been handed work would have stepped by now
        assertEquals(steps, engineB.steps(), "the remote engine ran nothing");
        // the right secret over the same raw path does run (the refusals above were for the header alone)
        HttpResponse<String> ok = HTTP.send(HttpRequest.newBuilder(URI.create(addressB + InternalWire.GENERATE))
            .header(InternalWire.SECRET_HEADER, InternalWire.token(SECRET)).POST(HttpRequest.BodyPublishers.ofString(body)).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(200, ok.statusCode());
        assertTrue(ok.body().contains("\"finish\":\"length\""), ok.body());
    }

    @Test
    void cancellingMidStreamFreesTheRemoteSequences() throws Exception {
        int maxTokens = 120;
        int[] prompt = longRunningPrompt(maxTokens);
        CountDownLatch started = new CountDownLatch(2);
        List<Integer> seen = new ArrayList<>();
        List<InferenceExecutor.Choice> cs = new ArrayList<>();
        for (int c = 0; c < 2; c++) {
            cs.add(new InferenceExecutor.Choice(SamplingParams.greedy(maxTokens), (t, l) -> {
                synchronized (seen) {
                    seen.add(t);
                }
                started.countDown();
                return true;
            }));
        }
        List<List<CompletableFuture<Generator.Finish>>> fs = clusterA.submit(new InferenceExecutor.Work("req-cancel", "t1", null,
            List.of(new InferenceExecutor.Prompt(prompt, cs)), null));
        assertTrue(started.await(30, TimeUnit.SECONDS), "tokens arrived");
        fs.get(0).forEach(f -> f.cancel(true));
        waitFor(() -> engineB.running() == 0 && engineB.queued() == 0 && apiB.streams() == 0, "B freed the sequences");
        assertTrue(fs.get(0).stream().allMatch(CompletableFuture::isCancelled));
        synchronized (seen) {
            assertTrue(seen.size() < 2 * maxTokens, "the choices stopped early: " + seen.size() + " tokens");
        }
    }

    /**
     * The executing node's listener goes away mid-stream (its connections with it: what a killed
     * node looks like to the front): each choice resumes on A from its prompt plus the tokens it
     * had received, and its sink sees the same tokens and logprobs a single engine gives, each
     * position once; the request counts once as migrated for {@code node_lost}.
     */
    @Test
    void aNodeLostMidStreamResumesItsChoicesElsewhereWithTheSameTokens() throws Exception {
        try (NodeB b = NodeB.over(slowed(new LocalExecutor(engineB)))) {
            ClusterExecutor a = b.a();
            cutMidStream(a, () -> b.vertx().close().await(), "node_lost");
            // a node that is gone: placed again without it (here: on A itself), nothing refused
            Recorded r = new Recorded(Integer.MAX_VALUE);
            List<CompletableFuture<Generator.Finish>> fs = a.submit(new InferenceExecutor.Work("req-gone", "t1", null,
                List.of(new InferenceExecutor.Prompt(new int[] {3, 4}, List.of(new InferenceExecutor.Choice(SamplingParams.greedy(4), r)))),
                null)).get(0);
            assertEquals(Generator.Finish.LENGTH, fs.get(0).get(30, TimeUnit.SECONDS));
            assertEquals(1, a.forwarded(), "the second request was admitted nowhere else");
        }
    }

    /** B drains ({@link InternalApi#drain}): its choices come back with a move line and resume on A; B refuses new work with 503. */
    @Test
    void aDrainingNodeGivesItsChoicesBackAndTheyResumeElsewhere() throws Exception {
        try (NodeB b = NodeB.over(slowed(new LocalExecutor(engineB)))) {
            String address = b.view().nodes.get(1).address();
            cutMidStream(b.a(), () -> assertTrue(b.api().drain() > 0, "unfinished choices are given back"), "drain");
            waitFor(() -> engineB.running() == 0 && engineB.queued() == 0, "the drained node's sequences were cancelled");
            HttpResponse<String> refused = HTTP.send(HttpRequest.newBuilder(URI.create(address + InternalWire.GENERATE))
                .header(InternalWire.SECRET_HEADER, InternalWire.token(SECRET)).POST(HttpRequest.BodyPublishers.ofString("{}")).build(),
                HttpResponse.BodyHandlers.ofString());
            assertEquals(503, refused.statusCode(), refused.body());
            assertTrue(refused.body().contains("draining"), refused.body());
        }
    }

    /**
     * No node has room: requests wait at the front node (not on A's engine), and go out in the
     * engine's fair order (deficit round-robin per tenant) as room appears; one freed slot takes
     * one request; a cancelled one leaves the wait; the wait is bounded (429); a request no node
     * could ever hold is not held but handed to the local engine, which refuses it.
     */
    @Test
    void requestsWaitForRoomInTheClusterAndLeaveInFairOrder() throws Exception {
        FixedView view = new FixedView(addressB);
        NodeState a0 = view.nodes.get(0);
        ClusterExecutor a = new ClusterExecutor(localA, view, Placements.defaultPlacement(), remotes, 8);
        try {
            view.states(a0, stateOfB(64)); // B full too
            long stepsA = engineA.steps();
            long stepsB = quietSteps(engineB);
            List<String> order = java.util.Collections.synchronizedList(new ArrayList<>());
            List<List<CompletableFuture<Generator.Finish>>> x1 = a.submit(one("x", "x1", order));
            List<List<CompletableFuture<Generator.Finish>>> x2 = a.submit(one("x", "x2", order));
            List<List<CompletableFuture<Generator.Finish>>> x3 = a.submit(one("x", "x3", order));
            List<List<CompletableFuture<Generator.Finish>>> y1 = a.submit(one("y", "y1", order));
            assertEquals(4, a.waiting());
            assertThrows(Engine.QueueFullException.class, () -> a.submit(new InferenceExecutor.Work("big", "z", null,
                List.of(new InferenceExecutor.Prompt(new int[] {3, 4}, java.util.Collections.nCopies(5,
                    new InferenceExecutor.Choice(SamplingParams.greedy(3), (t, l) -> true)))), null)), "8 sequences may wait");
            assertThrows(Engine.RequestTooLargeException.class, () -> a.submit(new InferenceExecutor.Work("huge", "z", null,
                List.of(new InferenceExecutor.Prompt(new int[] {3, 4}, java.util.Collections.nCopies(100,
                    new InferenceExecutor.Choice(SamplingParams.greedy(3), (t, l) -> true)))), null)), "no node holds 100 sequences");
            x3.get(0).get(0).cancel(false);
            waitFor(() -> a.waiting() == 3, "the cancelled request left the wait");
            Thread.sleep(200);
            assertEquals(stepsA, engineA.steps(), "nothing ran on A while every node was full");
            assertEquals(stepsB, engineB.steps(), "nothing ran on B while every node was full");

            view.states(a0, stateOfB(62)); // room for two one-sequence requests on B
            x1.get(0).get(0).get(60, TimeUnit.SECONDS);
            y1.get(0).get(0).get(60, TimeUnit.SECONDS);
            // x's turn took x1, then y's turn y1, though x2 came before y1 (their first tokens may come in either order)
            assertEquals(Set.of("x1", "y1"), Set.copyOf(order));
            assertEquals(1, a.waiting(), "two slots freed, two requests left: x2 still waits");
            assertFalse(x2.get(0).get(0).isDone());
            view.states(a0, stateOfB(0));
            assertTrue(x2.get(0).get(0).get(60, TimeUnit.SECONDS) != null);
            assertEquals("x2", order.get(2));
            assertEquals(3, a.forwarded());
            assertEquals(stepsA, engineA.steps(), "every waiting request ran on B");
        } finally {
            a.close();
        }
    }

    /**
     * A burst between two of B's published states: A charges B's last state with what it placed
     * there since, so four one-sequence requests fill B's four slots and the fifth waits instead of
     * piling onto B; B's next state (newer than those placements) replaces the charges.
     */
    @Test
    void aBurstBetweenTwoPublishedStatesDoesNotOverfillANode() throws Exception {
        FixedView view = new FixedView(addressB);
        NodeState a0 = view.nodes.get(0);
        ClusterExecutor a = new ClusterExecutor(localA, view, Placements.defaultPlacement(), remotes);
        try {
            long published = System.currentTimeMillis() - 1;
            view.states(a0, new NodeState("b", addressB, "cpu", 0, 0, 4, 1000, 1000, 16, Set.of(), Set.of(), 1, false, published));
            List<String> order = java.util.Collections.synchronizedList(new ArrayList<>());
            List<CompletableFuture<Generator.Finish>> fs = new ArrayList<>();
            for (int i = 0; i < 5; i++) {
                fs.add(a.submit(one("t" + i, "r" + i, order)).get(0).get(0));
            }
            assertEquals(4, a.forwarded(), "B's four slots took four requests");
            assertEquals(1, a.waiting(), "the fifth waits for room");
            for (int i = 0; i < 4; i++) {
                fs.get(i).get(60, TimeUnit.SECONDS);
            }
            view.states(a0, new NodeState("b", addressB, "cpu", 0, 0, 4, 1000, 1000, 16, Set.of(), Set.of(), 1, false,
                System.currentTimeMillis() + 1));
            fs.get(4).get(60, TimeUnit.SECONDS);
            assertEquals(5, a.forwarded());
        } finally {
            a.close();
        }
    }

    /** B's state with {@code running} of its 64 batch slots taken. */
    private static NodeState stateOfB(int running) {
        return new NodeState("b", addressB, "cpu", running, 0, 64, 1000, 1000, 16, Set.of(), Set.of(), 1, false, Long.MAX_VALUE);
    }

    /** A one-choice request of {@code tenant} costing about 200 tokens, which appends {@code name} to {@code order} at its first token. */
    private static InferenceExecutor.Work one(String tenant, String name, List<String> order) {
        boolean[] first = {true};
        return new InferenceExecutor.Work(name, tenant, null, List.of(new InferenceExecutor.Prompt(new int[] {5, 9, 13},
            List.of(new InferenceExecutor.Choice(SamplingParams.greedy(200), (t, l) -> {
                if (first[0]) {
                    first[0] = false;
                    order.add(name);
                }
                return false; // one token is enough to see the order
            })))), null);
    }

    /**
     * B's KV pool is too small for the request's four long choices: instead of preempting the
     * newest ones and making them wait, B gives them back ({@code move kv}) and A resumes them;
     * every choice still gives what A's own engine gives.
     */
    @Test
    void aNodeWhoseKvPoolRunsDryGivesItsNewestChoicesBack() throws Exception {
        Engine tight = new Engine(LlamaModel.load(dir), new CpuBackend(1), null,
            Engine.Options.builder().maxBatch(8).maxQueued(64).blockSize(4)
                .kvCacheBytes(20 * dev.loragateway.batcher.KvBlockPool.bytesPerBlock(model.config(), 4)).build());
        try (NodeB b = NodeB.over(new LocalExecutor(tight))) {
            b.api().moveOnKvShortage(() -> true);
            ClusterExecutor a = b.a();
            int maxTokens = 40;
            int[] prompt = longRunningPrompt(maxTokens);
            List<SamplingParams> params = List.of(SamplingParams.greedy(maxTokens), new SamplingParams(0, 1, 0, maxTokens, 1),
                SamplingParams.greedy(maxTokens), new SamplingParams(0, 1, 0, maxTokens, 2));
            Outcome remote = run(a, params, Integer.MAX_VALUE, new int[][] {prompt, {prompt[1], prompt[0], prompt[2], prompt[3]}});
            assertTrue(tight.movedAway() > 0, "the pool never ran dry");
            assertEquals(1L, a.migrated().get("kv"), "the request counts once: " + a.migrated());
            assertSame(run(localA, params, Integer.MAX_VALUE, new int[][] {prompt, {prompt[1], prompt[0], prompt[2], prompt[3]}}), remote);
            waitFor(() -> tight.running() == 0 && tight.queued() == 0 && tight.kvBlocksUsed() == 0,
                "B freed everything");
        } finally {
            tight.close();
        }
    }

    /**
     * B's member leaves the cluster while its stream still runs (a node cut off, its TCP connection
     * not yet broken): the choices resume on A at once; B's late tokens are refused, so each
     * position reaches the sink once.
     */
    @Test
    void aMemberThatLeavesHasItsChoicesResumedWithoutWaitingForItsConnection() throws Exception {
        try (NodeB b = NodeB.over(slowed(new LocalExecutor(engineB)))) {
            cutMidStream(b.a(), () -> b.view().leave("b"), "node_lost");
            waitFor(() -> engineB.running() == 0 && engineB.queued() == 0, "B's stale choices were stopped");
        }
    }

    /**
     * Runs two prompts × n = 2 (greedy and seeded sampling, with logprobs) through {@code a} onto
     * B, calls {@code cut} once every choice has a few tokens, and checks that every choice still
     * gives exactly what A's own engine gives, and that the request counted once under {@code reason}.
     */
    private static void cutMidStream(ClusterExecutor a, Runnable cut, String reason) throws Exception {
        int maxTokens = 40;
        List<SamplingParams> params = List.of(new SamplingParams(0, 1, 0, maxTokens, 2), new SamplingParams(0.9, 1, 42, maxTokens, 1),
            new SamplingParams(1.2, 0.9, 43, maxTokens, -1), new SamplingParams(0.8, 1, 44, maxTokens, 0));
        int[][] prompts = {longRunningPrompt(maxTokens), {3, 3, 8, 21, 4, 11, 6}};
        List<Recorded> recs = new ArrayList<>();
        List<InferenceExecutor.Prompt> ps = new ArrayList<>();
        int i = 0;
        for (int[] p : prompts) {
            List<InferenceExecutor.Choice> cs = new ArrayList<>();
            for (int c = 0; c < 2; c++) {
                Recorded r = new Recorded(Integer.MAX_VALUE);
                recs.add(r);
                cs.add(new InferenceExecutor.Choice(params.get(i++), r));
            }
            ps.add(new InferenceExecutor.Prompt(p, cs));
        }
        long before = a.migrated().getOrDefault(reason, 0L);
        List<List<CompletableFuture<Generator.Finish>>> fs = a.submit(new InferenceExecutor.Work("req-cut", "t1", null, ps, null));
        assertEquals(1, a.forwarded(), "the request went to B");
        waitFor(() -> {
            for (int c = 0; c < recs.size(); c++) {
                synchronized (recs.get(c)) {
                    if (recs.get(c).tokens.size() < 3 && !fs.get(c / 2).get(c % 2).isDone()) {
                        return false;
                    }
                }
            }
            return true;
        }, "every choice has tokens from B");
        cut.run();
        List<String> got = new ArrayList<>();
        List<Float> gotFloats = new ArrayList<>();
        int k = 0;
        for (List<CompletableFuture<Generator.Finish>> perPrompt : fs) {
            for (CompletableFuture<Generator.Finish> f : perPrompt) {
                got.add(f.get(60, TimeUnit.SECONDS) + " " + recs.get(k++).describe(gotFloats));
            }
        }
        assertEquals(before + 1, a.migrated().get(reason), "one request moved off B: " + a.migrated());
        Outcome local = run(localA, params, Integer.MAX_VALUE, prompts);
        assertSame(local, new Outcome(got, gotFloats));
    }

    /** Another node B: a listener of its own over {@code onB}, and A's cluster executor that sees it with room. */
    record NodeB(Vertx vertx, InternalApi api, FixedView view, ClusterExecutor a) implements AutoCloseable {
        static NodeB over(InferenceExecutor onB) {
            Vertx v = Vertx.vertx();
            InternalApi api = new InternalApi(v, onB, SECRET);
            FixedView view = new FixedView("http://127.0.0.1:" + api.listen("127.0.0.1", 0).await());
            return new NodeB(v, api, view, new ClusterExecutor(localA, view, Placements.defaultPlacement(), remotes));
        }

        @Override
        public void close() {
            a.close();
            vertx.close().await();
        }
    }

    /** {@code ex} with 5 ms more per token (a slower engine), so a stream is still running when the test cuts it. */
    private static InferenceExecutor slowed(InferenceExecutor ex) {
        return new InferenceExecutor() {
            @Override
            public List<List<CompletableFuture<Generator.Finish>>> submit(Work work) {
                List<Prompt> prompts = new ArrayList<>();
                for (Prompt p : work.prompts()) {
                    List<Choice> cs = new ArrayList<>();
                    for (Choice c : p.choices()) {
                        cs.add(new Choice(c.params(), (t, l) -> {
                            try {
                                Thread.sleep(5);
                            } catch (InterruptedException e) {
                                Thread.currentThread().interrupt();
                            }
                            return c.sink().accept(t, l);
                        }));
                    }
                    prompts.add(new Prompt(p.tokens(), cs));
                }
                return ex.submit(new Work(work.requestId(), work.tenant(), work.adapter(), prompts, work.trace()));
            }

            @Override
            public dev.loragateway.batcher.ModelConfig config() {
                return ex.config();
            }

            @Override
            public String unhealthy(long stallNanos) {
                return ex.unhealthy(stallNanos);
            }
        };
    }

    /** A prompt whose greedy answer runs to {@code maxTokens} without an end-of-sequence token (checked on A's engine). */
    private static int[] longRunningPrompt(int maxTokens) throws Exception {
        for (int seed = 1; seed < 40; seed++) {
            int[] prompt = {seed, seed * 7 % 50 + 1, seed * 13 % 60 + 2, 4};
            Generator.Finish f = engineA.submit(new Engine.Request(prompt, SamplingParams.greedy(maxTokens), null, (t, l) -> true))
                .get(60, TimeUnit.SECONDS);
            if (f == Generator.Finish.LENGTH) {
                return prompt;
            }
        }
        throw new AssertionError("no demo prompt ran " + maxTokens + " tokens without an end-of-sequence token");
    }

    @Test
    void aFullRemoteQueueSurfacesAsTheEnginesOwnException() throws Exception {
        Engine small = new Engine(model, new CpuBackend(1), 2);
        Vertx v = Vertx.vertx();
        CountDownLatch inSink = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        try {
            InternalApi api = new InternalApi(v, new LocalExecutor(small), SECRET);
            String address = "http://127.0.0.1:" + api.listen("127.0.0.1", 0).await();
            ClusterExecutor a = new ClusterExecutor(localA, new FixedView(address), Placements.defaultPlacement(), remotes);
            // hold the small engine's thread inside a sink, so the next sequences stay queued
            CompletableFuture<Generator.Finish> holder = small.submit(new Engine.Request(new int[] {1, 2}, SamplingParams.greedy(3), null,
                (t, l) -> {
                    inSink.countDown();
                    try {
                        release.await(60, TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                    return true;
                }));
            assertTrue(inSink.await(30, TimeUnit.SECONDS));
            small.submitForks(new int[] {3, 4}, null, "t1", List.of(new Engine.Choice(SamplingParams.greedy(2), (t, l) -> true),
                new Engine.Choice(SamplingParams.greedy(2), (t, l) -> true)));
            assertEquals(2, small.queued());
            InferenceExecutor.Work one = new InferenceExecutor.Work("req-full", "t1", null, List.of(new InferenceExecutor.Prompt(
                new int[] {5, 6}, List.of(new InferenceExecutor.Choice(SamplingParams.greedy(2), (t, l) -> true)))), null);
            Engine.QueueFullException full = assertThrows(Engine.QueueFullException.class, () -> a.submit(one));
            assertEquals(new Engine.QueueFullException(2, 1, 2).getMessage(), full.getMessage());
            InferenceExecutor.Work three = new InferenceExecutor.Work("req-large", "t1", null, List.of(new InferenceExecutor.Prompt(
                new int[] {5, 6}, List.of(new InferenceExecutor.Choice(SamplingParams.greedy(2), (t, l) -> true),
                    new InferenceExecutor.Choice(SamplingParams.greedy(2), (t, l) -> true),
                    new InferenceExecutor.Choice(SamplingParams.greedy(2), (t, l) -> true)))), null);
            Engine.RequestTooLargeException large = assertThrows(Engine.RequestTooLargeException.class, () -> a.submit(three));
            assertEquals(new Engine.RequestTooLargeException(3, 1, 3, 2).getMessage(), large.getMessage());
            InferenceExecutor.Work bad = new InferenceExecutor.Work("req-bad", "t1", null, List.of(new InferenceExecutor.Prompt(
                new int[] {5, model.config().vocabSize()}, List.of(new InferenceExecutor.Choice(SamplingParams.greedy(2), (t, l) -> true)))),
                null);
            IllegalArgumentException iae = assertThrows(IllegalArgumentException.class, () -> a.submit(bad));
            assertFalse(iae instanceof Engine.RequestTooLargeException);
            assertTrue(iae.getMessage().contains("outside the vocabulary"), iae.getMessage());
            assertEquals(0, a.forwarded(), "refused requests are not counted as forwarded");
            release.countDown();
            holder.get(30, TimeUnit.SECONDS);
        } finally {
            release.countDown();
            v.close().await();
            small.close();
        }
    }

    @Test
    void theHttpApiAnswersTheSameThroughAForwardingNode() throws Exception {
        Vertx v = Vertx.vertx();
        try {
            String direct = "http://127.0.0.1:" + new ApiServer(v, localA, tokenizer, "demo", MAX_LEN, null).listen("127.0.0.1", 0).await();
            String forwarding = "http://127.0.0.1:" + new ApiServer(v, clusterA, tokenizer, "demo", MAX_LEN, null)
                .listen("127.0.0.1", 0).await();
            String body = "{\"model\":\"demo\",\"prompt\":[\"the quick brown fox\",\"hello there\"],\"max_tokens\":14,\"n\":2,"
                + "\"temperature\":0.9,\"seed\":1234,\"logprobs\":2%s}";
            long before = clusterA.forwarded();
            JsonNode a = JSON.readTree(post(direct, String.format(body, "")));
            JsonNode b = JSON.readTree(post(forwarding, String.format(body, "")));
            assertEquals(before + 1, clusterA.forwarded());
            assertClose(a.get("choices"), b.get("choices"), "choices");
            assertEquals(a.get("usage"), b.get("usage"));
            assertEquals(4, a.get("choices").size());
            String streamed = String.format(body, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
            assertClose(streamedChoices(post(direct, streamed)), streamedChoices(post(forwarding, streamed)), "stream");
            assertEquals(before + 2, clusterA.forwarded());
            // greedy, no logprobs, stop string: the same through both
            String greedy = "{\"model\":\"demo\",\"prompt\":\"once upon\",\"max_tokens\":20,\"temperature\":0,\"stop\":[\"e\"]}";
            assertEquals(JSON.readTree(post(direct, greedy)).get("choices"), JSON.readTree(post(forwarding, greedy)).get("choices"));
            assertEquals(before + 3, clusterA.forwarded());
        } finally {
            v.close().await();
        }
    }

    /** Per choice index: its text, logprob entries and finish reason, over all chunks (chunk boundaries may differ); and the usage. */
    private static JsonNode streamedChoices(String sse) throws Exception {
        ObjectNode out = JSON.createObjectNode();
        ObjectNode text = out.putObject("text");
        ObjectNode lps = out.putObject("logprobs");
        ObjectNode finish = out.putObject("finish");
        SseEvents events = SseEvents.parse(sse);
        for (JsonNode chunk : events.chunks()) {
            assertFalse(chunk.has("error"), chunk.toString());
            if (chunk.hasNonNull("usage")) {
                out.set("usage", chunk.get("usage"));
            }
            for (JsonNode c : chunk.path("choices")) {
                String i = c.get("index").asText();
                text.put(i, text.path(i).asText("") + c.path("text").asText(""));
                if (c.hasNonNull("logprobs")) {
                    ArrayNode l = lps.has(i) ? (ArrayNode) lps.get(i) : lps.putArray(i);
                    c.get("logprobs").path("tokens").forEach(l::add);
                    c.get("logprobs").path("token_logprobs").forEach(l::add);
                    c.get("logprobs").path("top_logprobs").forEach(l::add);
                }
                if (c.hasNonNull("finish_reason")) {
                    finish.put(i, c.get("finish_reason").asText());
                }
            }
        }
        assertTrue(events.done(), "the stream ended with [DONE]");
        assertEquals(4, finish.size(), sse);
        assertTrue(out.has("usage"), sse);
        return out;
    }

    /** Equal JSON, except that numbers with a fraction may differ by 1e-4 (logprobs: see {@link #assertSame}). */
    private static void assertClose(JsonNode expected, JsonNode actual, String path) {
        if (expected.isFloatingPointNumber() && actual.isFloatingPointNumber()) {
            assertEquals(expected.doubleValue(), actual.doubleValue(), 1e-4, path);
            return;
        }
        assertEquals(expected.getNodeType(), actual.getNodeType(), path);
        if (expected.isContainerNode()) {
            assertEquals(expected.size(), actual.size(), path + ": " + expected + " vs " + actual);
            if (expected.isArray()) {
                for (int i = 0; i < expected.size(); i++) {
                    assertClose(expected.get(i), actual.get(i), path + "[" + i + "]");
                }
            } else {
                expected.fieldNames().forEachRemaining(f -> assertClose(expected.get(f), actual.path(f), path + "." + f));
            }
        } else {
            assertEquals(expected, actual, path);
        }
    }

    private static String post(String base, String body) throws Exception {
        HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions"))
            .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
            HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        return r.body();
    }

    /** {@code e.steps()} once it has nothing to run and has stopped stepping (another test's last step may still finish). */
    private static long quietSteps(Engine e) throws InterruptedException {
        waitFor(() -> e.running() == 0 && e.queued() == 0, "the engine is idle");
        long steps;
        do {
            steps = e.steps();
            Thread.sleep(100);
        } while (e.steps() != steps);
        return steps;
    }

    private static void waitFor(BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("not within 20 s: " + what);
            }
            Thread.sleep(10);
        }
    }
}
