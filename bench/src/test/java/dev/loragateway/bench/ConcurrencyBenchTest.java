package dev.loragateway.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.adapters.AdapterKey;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class ConcurrencyBenchTest {

    @Test
    void percentileMatchesNearestRankOfASortedCopy() {
        SplittableRandom r = new SplittableRandom(5);
        for (int trial = 0; trial < 500; trial++) {
            int n = 1 + r.nextInt(300);
            double[] v = new double[n];
            for (int i = 0; i < n; i++) {
                // many ties on purpose in some trials
                v[i] = trial % 3 == 0 ? r.nextInt(10) : r.nextDouble() * 1000;
            }
            double[] sorted = v.clone();
            Arrays.sort(sorted);
            double[] before = v.clone();
            for (int p : new int[] {1, 10, 25, 50, 75, 90, 95, 99, 100, 1 + r.nextInt(100)}) {
                double got = ConcurrencyBench.percentile(v, p);
                int rank = (p * n + 99) / 100; // ceil(p n / 100), exact in integers
                assertEquals(sorted[rank - 1], got, "p" + p + " of " + n + " values");
                long atOrBelow = Arrays.stream(v).filter(x -> x <= got).count();
                long below = Arrays.stream(v).filter(x -> x < got).count();
                assertTrue(atOrBelow * 100 >= (long) p * n, "at least p% at or below");
                assertTrue(below * 100 < (long) p * n, "fewer than p% strictly below");
            }
            assertEquals(sorted[0], ConcurrencyBench.percentile(v, 0.001), "tiny p is the minimum");
            assertEquals(sorted[n - 1], ConcurrencyBench.percentile(v, 100), "p100 is the maximum");
            assertTrue(Arrays.equals(before, v), "the input is left unsorted");
        }
    }

    @Test
    void percentileSkipsNaNAndRejectsBadP() {
        double[] v = {Double.NaN, 3, 1, Double.NaN, 2};
        assertEquals(2, ConcurrencyBench.percentile(v, 50));
        assertEquals(3, ConcurrencyBench.percentile(v, 99));
        assertTrue(Double.isNaN(ConcurrencyBench.percentile(new double[0], 50)));
        assertTrue(Double.isNaN(ConcurrencyBench.percentile(new double[] {Double.NaN}, 50)));
        assertEquals(7, ConcurrencyBench.percentile(new double[] {7}, 1));
        assertThrows(IllegalArgumentException.class, () -> ConcurrencyBench.percentile(v, 0));
        assertThrows(IllegalArgumentException.class, () -> ConcurrencyBench.percentile(v, 101));
        assertThrows(IllegalArgumentException.class, () -> ConcurrencyBench.percentile(v, Double.NaN));
    }

    @Test
    void kneeWhereThroughputFlattens() {
        int[] c = {1, 4, 16, 32, 64};
        double[] tps = {8, 30, 120, 127, 129}; // +275%, +300%, +5.8%, +1.6%
        double[] tpot = {120, 130, 140, 300, 600}; // x2.14 from 16 to 32 as well
        ConcurrencyBench.Knee k = ConcurrencyBench.knee(tps, tpot);
        assertEquals(2, k.index());
        assertEquals(127.0 / 120 - 1, k.gain(), 1e-12);
        assertEquals(300.0 / 140, k.tpotGrowth(), 1e-12);
        assertEquals("knee: concurrency 16 (tokens/s +6% from 16 to 32 while p99 TPOT x2.1)", ConcurrencyBench.describeKnee(c, k));
    }

    @Test
    void tpotGrowthAloneIsNoKnee() {
        double[] tps = {10, 40, 100, 180};
        double[] tpot = {100, 110, 250, 260}; // x2.27 from level 1 to 2 while tokens/s +150%
        ConcurrencyBench.Knee k = ConcurrencyBench.knee(tps, tpot);
        assertEquals(-1, k.index());
        assertEquals(0.8, k.gain(), 1e-12);
        assertEquals("knee: not reached up to concurrency 32 (tokens/s +80% from 16 to 32 while p99 TPOT x1.0)",
            ConcurrencyBench.describeKnee(new int[] {1, 4, 16, 32}, k));
    }

    @Test
    void kneeThresholdsAreStrict() {
        // exactly +10% does not mark the knee; just under +10% does
        assertEquals(-1, ConcurrencyBench.knee(new double[] {100, 110}, new double[] {10, 20}).index());
        assertEquals(0, ConcurrencyBench.knee(new double[] {100, 109.9}, new double[] {10, 10}).index());
        // falling throughput is a knee too
        assertEquals(0, ConcurrencyBench.knee(new double[] {100, 90, 200}, new double[] {10, 10, 10}).index());
    }

    @Test
    void noKneeWhileEveryStepPaysOff() {
        int[] c = {1, 2, 4};
        ConcurrencyBench.Knee k = ConcurrencyBench.knee(new double[] {10, 19, 35}, new double[] {50, 52, 60});
        assertEquals(-1, k.index());
        assertEquals("knee: not reached up to concurrency 4 (tokens/s +84% from 2 to 4 while p99 TPOT x1.2)",
            ConcurrencyBench.describeKnee(c, k));
        ConcurrencyBench.Knee one = ConcurrencyBench.knee(new double[] {10}, new double[] {50});
        assertEquals(-1, one.index());
        assertEquals("knee: needs at least two concurrency levels", ConcurrencyBench.describeKnee(new int[] {8}, one));
        // a NaN TPOT (one-token requests) does not count as growth
        ConcurrencyBench.Knee noTpot = ConcurrencyBench.knee(new double[] {10, 20}, new double[] {Double.NaN, Double.NaN});
        assertEquals(-1, noTpot.index());
        assertEquals("knee: not reached up to concurrency 2 (tokens/s +100% from 1 to 2 while p99 TPOT n/a)",
            ConcurrencyBench.describeKnee(new int[] {1, 2}, noTpot));
    }

    @Test
    void promptLengthsCoverHalfToThreeHalves() {
        ConcurrencyBench.Workload w = new ConcurrencyBench.Workload(64, 8, 0, 1000, List.of(AdapterKey.system("a"), AdapterKey.system("b")));
        SplittableRandom r = new SplittableRandom(1);
        int min = Integer.MAX_VALUE;
        int max = 0;
        for (int i = 0; i < 5000; i++) {
            int[] p = w.prompt(r);
            min = Math.min(min, p.length);
            max = Math.max(max, p.length);
            assertTrue(Arrays.stream(p).allMatch(t -> t >= 0 && t < 1000));
        }
        assertEquals(32, min);
        assertEquals(96, max);
        assertEquals(1, ConcurrencyBench.Workload.minPrompt(1));
        assertEquals(1, ConcurrencyBench.Workload.maxPrompt(1));
        assertEquals(0, w.thinkNanos(r), "no think time at mean 0");
        ConcurrencyBench.Workload t = new ConcurrencyBench.Workload(4, 8, 20, 1000, List.of());
        double mean = 0;
        for (int i = 0; i < 20000; i++) {
            mean += t.thinkNanos(r) / 1e6 / 20000;
        }
        assertEquals(20, mean, 1.0, "exponential think time with mean 20 ms");
        assertEquals(null, t.adapter(r), "base model without adapters");
    }

    /** A fake engine: every 2 ms (fixed delay) one step gives one token to each running request. */
    private static final class SteppingServer implements ConcurrencyBench.Server {
        private final ScheduledExecutorService clock = Executors.newSingleThreadScheduledExecutor();
        private final List<Object[]> running = new ArrayList<>(); // {Runnable onToken, int[] left, future}
        private final List<AdapterKey> adapters = new ArrayList<>();
        private volatile long steps;

        SteppingServer() {
            clock.scheduleWithFixedDelay(this::step, 2, 2, TimeUnit.MILLISECONDS);
        }

        private synchronized void step() {
            if (running.isEmpty()) {
                return;
            }
            steps++;
            running.removeIf(s -> {
                ((Runnable) s[0]).run();
                int[] left = (int[]) s[1];
                if (--left[0] == 0) {
                    ((CompletableFuture<?>) s[2]).complete(null);
                    return true;
                }
                return false;
            });
        }

        @Override
        public synchronized CompletableFuture<?> submit(int[] prompt, int maxTokens, AdapterKey adapter, Runnable onToken) {
            CompletableFuture<Void> f = new CompletableFuture<>();
            adapters.add(adapter);
            running.add(new Object[] {onToken, new int[] {maxTokens}, f});
            return f;
        }

        @Override
        public long steps() {
            return steps;
        }

        @Override
        public void close() {
            clock.shutdownNow();
        }
    }

    @Test
    void runLevelCountsRequestsTokensAndBatching() throws Exception {
        List<AdapterKey> keys = List.of(AdapterKey.system("x"), AdapterKey.system("y"), AdapterKey.system("z"));
        ConcurrencyBench.Workload w = new ConcurrencyBench.Workload(16, 5, 1, 100, keys);
        try (SteppingServer s = new SteppingServer()) {
            ConcurrencyBench.Level l = ConcurrencyBench.runLevel(s, 4, 23, w, 3);
            assertEquals(4, l.concurrency());
            assertEquals(23, l.requests());
            assertEquals(23 * 5, l.tokens());
            assertEquals(l.tokens() / l.wallS(), l.tokensPerS(), 1e-9);
            assertTrue(l.meanBatch() >= 1 && l.meanBatch() <= 4, "mean batch " + l.meanBatch());
            assertTrue(l.tpotP50() >= 2 && l.tpotP99() >= l.tpotP50(), "tokens come at least 2 ms apart: " + l.row());
            assertTrue(l.ttftP50() > 0 && l.ttftP99() >= l.ttftP50(), l.row());
            assertEquals(23, s.adapters.size());
            assertTrue(s.adapters.containsAll(keys), "adapters picked among all keys");
        }
    }

    @Test
    void runLevelReportsAFailedRequest() {
        ConcurrencyBench.Server failing = new ConcurrencyBench.Server() {
            @Override
            public CompletableFuture<?> submit(int[] prompt, int maxTokens, AdapterKey adapter, Runnable onToken) {
                return CompletableFuture.failedFuture(new IllegalStateException("adapter could not load"));
            }

            @Override
            public long steps() {
                return 0;
            }

            @Override
            public void close() {
            }
        };
        ConcurrencyBench.Workload w = new ConcurrencyBench.Workload(4, 2, 0, 100, List.of());
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> ConcurrencyBench.runLevel(failing, 2, 4, w, 1));
        assertTrue(e.getMessage().contains("adapter could not load"), e.getMessage());
    }

    @Test
    void rowPrintsMissingFiguresAsDashes() {
        ConcurrencyBench.Level l = new ConcurrencyBench.Level(4, 16, 16, 2.0, 8.0, 120.4, 300.6, Double.NaN, Double.NaN, 3.25);
        assertEquals("| 4 | 16 | 8.0 | 120 | 301 | - | - | 3.3 | 2.0 |", l.row());
        assertEquals(ConcurrencyBench.HEADER.lines().findFirst().orElseThrow().split("\\|").length, l.row().split("\\|").length,
            "as many columns as the header");
    }

    @Test
    void requestsDefaultToTwiceTheConcurrencyWithinSixteenAndNinetySix() {
        assertEquals(16, ConcurrencyBench.requestsFor(null, 1));
        assertEquals(16, ConcurrencyBench.requestsFor(null, 8));
        assertEquals(64, ConcurrencyBench.requestsFor(null, 32));
        assertEquals(96, ConcurrencyBench.requestsFor(null, 64));
        assertEquals(96, ConcurrencyBench.requestsFor(null, 1000));
        assertEquals(5, ConcurrencyBench.requestsFor(5, 64));
    }
}
