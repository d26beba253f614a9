package dev.loragateway.bench.gpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class SgmvBenchTest {
    @Test
    void rowsSplitIntoNearlyEqualSegmentsTheFirstOnesLonger() {
        SgmvBench.Layout l = new SgmvBench.Layout(10, 4, 8, 32, 32);
        assertArrayEquals(new int[] {0, 3, 6, 8, 10}, l.segStart());
        assertArrayEquals(new int[] {0, 1, 2, 3}, l.segSlot());
        assertArrayEquals(new int[] {0, 0, 0, 1, 1, 1, 2, 2, 3, 3}, l.rowSlot());
        assertEquals(3, l.maxSegmentRows());
    }

    @Test
    void theIssuesBatchOf64SplitsEvenlyForEveryPowerOfTwo() {
        for (int d = 1; d <= 64; d *= 2) {
            SgmvBench.Layout l = new SgmvBench.Layout(64, d, 16, 4096, 4096);
            int[] s = l.segStart();
            assertEquals(d + 1, s.length);
            for (int g = 0; g < d; g++) {
                assertEquals(64 / d, s[g + 1] - s[g], "D " + d + " segment " + g);
            }
            assertEquals(64 / d, l.maxSegmentRows());
        }
    }

    @Test
    void poolOffsetsPutBTransposedRightAfterAAndSlotsBackToBack() {
        SgmvBench.Layout l = new SgmvBench.Layout(64, 8, 16, 4096, 1024);
        assertEquals(16L * (4096 + 1024), l.slotElements());
        assertEquals(0, l.offA(0));
        assertEquals(16L * 4096, l.offB(0));
        assertEquals(3 * l.slotElements(), l.offA(3));
        assertEquals(l.offA(4), l.offB(3) + 16L * 1024, "slot 3's Bᵀ (r × out) ends where slot 4 starts");
    }

    @Test
    void eachRowGathersItsOwnAdaptersSlotIntoItsOwnCopy() {
        SgmvBench.Layout l = new SgmvBench.Layout(6, 3, 8, 64, 32);
        long slotBytes = 2 * l.slotElements();
        assertEquals(slotBytes, l.gatherBytes());
        // rows [0,1] → slot 0, [2,3] → slot 1, [4,5] → slot 2
        assertArrayEquals(new long[] {0, 0, slotBytes, slotBytes, 2 * slotBytes, 2 * slotBytes}, l.gatherSources());
        for (int i = 0; i < 6; i++) {
            assertEquals(i * slotBytes, l.gatherTarget(i));
            // the copy stays inside the pool of 3 slots and the gathered buffer of 6
            assertTrue(l.gatherSources()[i] + l.gatherBytes() <= 3 * slotBytes);
            assertTrue(l.gatherTarget(i) + l.gatherBytes() <= 6 * slotBytes);
        }
    }

    @Test
    void moreAdaptersThanRowsIsRefused() {
        var e = assertThrows(IllegalArgumentException.class, () -> new SgmvBench.Layout(8, 9, 8, 64, 64));
        assertEquals("9 adapters for 8 rows: each needs a row", e.getMessage());
    }

    @Test
    void sgmvSplitsFillTwiceTheMultiprocessorsUpTo16() {
        // one segment of 64 rows: 4 row tiles; 132 SMs want 264 blocks → capped at 16
        assertEquals(16, SgmvBench.sgmvSplits(1, 64, 4096, 132));
        // 64 segments of one row: 64 blocks → ceil(264 / 64) = 5
        assertEquals(5, SgmvBench.sgmvSplits(64, 1, 4096, 132));
        // already enough blocks: 1
        assertEquals(1, SgmvBench.sgmvSplits(300, 1, 4096, 132));
        // a narrow input: at most one split per 32 columns
        assertEquals(2, SgmvBench.sgmvSplits(1, 16, 64, 132));
    }

    @Test
    void relativeDifferenceIsTheLargestErrorOverTheLargestValue() {
        assertEquals(0.0, SgmvBench.relativeDifference(new float[] {1, -2}, new float[] {1, -2}));
        assertEquals(0.125, SgmvBench.relativeDifference(new float[] {1.5f, -4}, new float[] {1, -4}), 1e-12); // 0.5 / 4
        assertEquals(3.0, SgmvBench.relativeDifference(new float[] {3, 0}, new float[] {0, 0}), 1e-12);
    }

    @Test
    void theTableHasTheIssuesColumns() {
        String header = SgmvBench.table().render().lines().findFirst().orElseThrow();
        for (String c : new String[] {"D", "rank", "sgmv µs", "bgmv µs", "gather+bmm µs", "gather+bmm / sgmv"}) {
            assertTrue(header.contains("| " + c + " "), header);
        }
    }
}
