package dev.loragateway.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The pool's offset arithmetic, without a GPU: alignment, reuse after free, coalescing, exhaustion. */
class OffsetAllocatorTest {
    @Test
    void theJavadocExample() {
        OffsetAllocator a = new OffsetAllocator(1024, 256);
        assertEquals(0, a.allocate(100));
        assertEquals(256, a.allocate(300));
        assertEquals(-1, a.allocate(300));
        a.free(0);
        assertEquals(0, a.allocate(200));
    }

    @Test
    void everyOffsetIsAlignedAndSizesRoundUp() {
        OffsetAllocator a = new OffsetAllocator(1 << 20, 256);
        long[] sizes = {1, 255, 256, 257, 0, 1000, 4096, 3};
        long expected = 0;
        for (long s : sizes) {
            long off = a.allocate(s);
            assertEquals(expected, off, "allocate(" + s + ")");
            assertEquals(0, off % 256);
            long rounded = Math.max(256, (s + 255) / 256 * 256);
            assertEquals(rounded, a.sizeAt(off));
            expected += rounded;
        }
        assertEquals(expected, a.used());
    }

    @Test
    void capacityRoundsDownToTheAlignment() {
        OffsetAllocator a = new OffsetAllocator(1000, 256);
        assertEquals(768, a.capacity());
        assertEquals(0, a.allocate(768));
        assertEquals(-1, a.allocate(1));
    }

    @Test
    void freedRangesAreReusedFirstFit() {
        OffsetAllocator a = new OffsetAllocator(4096, 256);
        long x = a.allocate(256);
        long y = a.allocate(512);
        long z = a.allocate(256);
        a.free(y);
        assertEquals(y, a.allocate(256), "first fit takes the front of the hole");
        assertEquals(y + 256, a.allocate(256), "and then the rest of it");
        assertEquals(z + 256, a.allocate(256), "the hole is full: past the last range");
        assertEquals(0, x);
    }

    @Test
    void freeingEverythingCoalescesIntoOneRange() {
        OffsetAllocator a = new OffsetAllocator(8 * 256, 256);
        List<Long> offs = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            offs.add(a.allocate(256));
        }
        assertEquals(-1, a.allocate(1), "full");
        assertEquals(0, a.freeRanges());
        // free in an order that makes holes on both sides before they merge
        for (int i : new int[] {1, 3, 5, 7, 0, 2, 6, 4}) {
            a.free(offs.get(i));
        }
        assertEquals(1, a.freeRanges());
        assertEquals(0, a.used());
        assertEquals(8 * 256, a.largestFree());
        assertEquals(0, a.allocate(8 * 256), "the whole region in one piece again");
    }

    @Test
    void exhaustionReturnsMinusOneAndLeavesStateAlone() {
        OffsetAllocator a = new OffsetAllocator(1024, 256);
        a.allocate(512);
        assertEquals(-1, a.allocate(513));
        assertEquals(512, a.used());
        assertEquals(512, a.largestFree());
        assertEquals(512, a.allocate(512));
    }

    @Test
    void fragmentationCanRefuseWhatTheTotalWouldHold() {
        OffsetAllocator a = new OffsetAllocator(1024, 256);
        long p = a.allocate(256);
        a.allocate(256);
        long r = a.allocate(256);
        a.allocate(256);
        a.free(p);
        a.free(r);
        assertEquals(512, a.capacity() - a.used());
        assertEquals(256, a.largestFree());
        assertEquals(-1, a.allocate(512));
    }

    @Test
    void doubleFreeAndUnknownOffsetsAreErrors() {
        OffsetAllocator a = new OffsetAllocator(1024, 256);
        long p = a.allocate(10);
        a.free(p);
        var e = assertThrows(IllegalArgumentException.class, () -> a.free(p));
        assertTrue(e.getMessage().contains("offset 0"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> a.free(128));
    }

    @Test
    void badShapesAreRejected() {
        assertThrows(IllegalArgumentException.class, () -> new OffsetAllocator(1024, 100));
        assertThrows(IllegalArgumentException.class, () -> new OffsetAllocator(100, 256));
        assertThrows(IllegalArgumentException.class, () -> new OffsetAllocator(1024, 256).allocate(-1));
    }

    /** Random allocate/free against a byte map of who owns what: ranges never overlap, frees restore. */
    @Test
    void randomWorkloadNeverOverlaps() {
        int units = 512;
        OffsetAllocator a = new OffsetAllocator(units * 256L, 256);
        int[] owner = new int[units]; // 0 = free, else allocation id
        Map<Long, Integer> live = new HashMap<>();
        Random rnd = new Random(6);
        int nextId = 1;
        for (int step = 0; step < 20_000; step++) {
            if (live.isEmpty() || rnd.nextInt(3) != 0) {
                long bytes = 1 + rnd.nextInt(16 * 256);
                long off = a.allocate(bytes);
                if (off < 0) {
                    assertTrue(a.largestFree() < (bytes + 255) / 256 * 256, "refused although a range fits");
                    continue;
                }
                int id = nextId++;
                for (long u = off / 256; u < (off + a.sizeAt(off)) / 256; u++) {
                    assertEquals(0, owner[(int) u], "unit " + u + " handed out twice");
                    owner[(int) u] = id;
                }
                live.put(off, id);
            } else {
                Long off = new ArrayList<>(live.keySet()).get(rnd.nextInt(live.size()));
                long size = a.sizeAt(off);
                a.free(off);
                for (long u = off / 256; u < (off + size) / 256; u++) {
                    owner[(int) u] = 0;
                }
                live.remove(off);
            }
            long used = 0;
            for (int o : owner) {
                used += o != 0 ? 256 : 0;
            }
            assertEquals(used, a.used());
        }
        for (long off : new ArrayList<>(live.keySet())) {
            a.free(off);
        }
        assertEquals(1, a.freeRanges());
    }
}
