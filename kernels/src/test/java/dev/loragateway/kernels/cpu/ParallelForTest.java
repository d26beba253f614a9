package dev.loragateway.kernels.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.Test;

/** {@link ParallelFor}: every index of {@code [0, total)} runs exactly once, shares start on the grain, failures reach the caller. */
class ParallelForTest {
    private static final Duration LIMIT = Duration.ofSeconds(20); // a lost share must fail the test, not hang it

    /** Runs one region and checks coverage and alignment; returns the number of body calls. */
    private static int runAndCheck(ParallelFor team, int total, int grain) {
        AtomicIntegerArray hits = new AtomicIntegerArray(Math.max(total, 1));
        List<int[]> calls = Collections.synchronizedList(new ArrayList<>());
        team.run(total, grain, (from, to) -> {
            calls.add(new int[] {from, to});
            for (int i = from; i < to; i++) {
                hits.incrementAndGet(i);
            }
        });
        String where = "total=" + total + " grain=" + grain + " threads=" + team.threads();
        for (int i = 0; i < total; i++) {
            if (hits.get(i) != 1) {
                fail(where + ": index " + i + " ran " + hits.get(i) + " times");
            }
        }
        for (int[] c : calls) {
            assertTrue(c[0] >= 0 && c[0] <= c[1] && c[1] <= total, where + ": share [" + c[0] + ", " + c[1] + ")");
            assertEquals(0, c[0] % grain, where + ": share start " + c[0] + " not aligned to the grain");
        }
        assertTrue(calls.size() <= team.threads(), where + ": " + calls.size() + " body calls");
        return calls.size();
    }

    @Test
    void sharesCoverTheRangeExactlyOnce() {
        assertTimeoutPreemptively(LIMIT, () -> {
            for (int threads : new int[] {1, 2, 3, 4, 7}) {
                try (ParallelFor team = new ParallelFor(threads)) {
                    assertEquals(threads, team.threads());
                    for (int total : new int[] {0, 1, 2, 3, 15, 16, 17, 100, 1000, 4099}) {
                        for (int grain : new int[] {1, 3, 16, 64}) {
                            runAndCheck(team, total, grain);
                        }
                    }
                }
            }
        });
    }

    @Test
    void manyShortRegionsInARow() {
        assertTimeoutPreemptively(LIMIT, () -> {
            try (ParallelFor team = new ParallelFor(3)) {
                int used = 0;
                for (int i = 0; i < 2000; i++) {
                    used = Math.max(used, runAndCheck(team, 1 + i % 97, 1 + i % 5));
                }
                assertEquals(3, used, "some region used every thread");
            }
        });
    }

    @Test
    void aWorkerFailureReachesTheCallerAndTheTeamStillWorks() {
        assertTimeoutPreemptively(LIMIT, () -> {
            try (ParallelFor team = new ParallelFor(3)) {
                IllegalStateException boom = new IllegalStateException("share failed");
                var thrown = assertThrows(IllegalStateException.class, () -> team.run(300, 1, (from, to) -> {
                    if (from > 0) { // a worker's share, not the caller's
                        throw boom;
                    }
                }));
                assertSame(boom, thrown);
                Error error = new AssertionError("error in share");
                assertSame(error, assertThrows(AssertionError.class, () -> team.run(300, 1, (from, to) -> {
                    if (from >= 200) {
                        throw error;
                    }
                })));
                for (int total : new int[] {5, 300, 1001}) {
                    runAndCheck(team, total, 1);
                }
            }
        });
    }

    /**
     * The caller's own share fails while the workers are still busy: run must not return (or
     * throw) before every share has finished, or the next region starts with workers from the old
     * one still running and returns with some of its own shares not yet done.
     */
    @Test
    void aCallerShareFailureWaitsForTheWorkersAndTheTeamStillWorks() {
        assertTimeoutPreemptively(LIMIT, () -> {
            try (ParallelFor team = new ParallelFor(3)) {
                RuntimeException boom = new RuntimeException("caller share failed");
                AtomicIntegerArray slowDone = new AtomicIntegerArray(1);
                assertThrows(RuntimeException.class, () -> team.run(300, 1, (from, to) -> {
                    if (from == 0) {
                        throw boom;
                    }
                    sleep(300); // workers still running when the caller's share fails
                    slowDone.incrementAndGet(0);
                }));
                assertEquals(2, slowDone.get(0),
                    "BUG ParallelFor.run: the caller's share threw and run() propagated it before the workers' shares finished");
                for (int total : new int[] {300, 1001}) {
                    runAndCheck(team, total, 1);
                }
            }
        });
    }

    /** Totals near Integer.MAX_VALUE: the share arithmetic must not overflow. Only the ranges are recorded. */
    @Test
    void totalsNearIntMaxAreCovered() {
        assertTimeoutPreemptively(LIMIT, () -> {
            try (ParallelFor team = new ParallelFor(3)) {
                for (int grain : new int[] {1, 16, 1 << 20}) {
                    int total = Integer.MAX_VALUE - 3;
                    List<int[]> calls = Collections.synchronizedList(new ArrayList<>());
                    team.run(total, grain, (from, to) -> calls.add(new int[] {from, to}));
                    calls.sort(Comparator.comparingInt(c -> c[0]));
                    long covered = 0;
                    for (int[] c : calls) {
                        assertEquals(covered, c[0], "grain " + grain + ": gap or overlap before share " + c[0] + ".." + c[1]);
                        covered = c[1];
                    }
                    assertEquals(total, covered,
                        "BUG ParallelFor.runShare: (total + grain - 1) and units·grain overflow int for total " + total + ", grain " + grain);
                }
            }
        });
    }

    @Test
    void rejectsNoThreads() {
        var e = assertThrows(IllegalArgumentException.class, () -> new ParallelFor(0));
        assertTrue(e.getMessage().contains("0"), e.getMessage());
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
