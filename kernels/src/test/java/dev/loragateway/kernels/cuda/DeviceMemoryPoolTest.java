package dev.loragateway.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import jcuda.driver.CUdeviceptr;
import org.junit.jupiter.api.Test;

/** Chunk growth, the limit and frees of {@link DeviceMemoryPool} over a fake {@code cuMemAlloc}. */
class DeviceMemoryPoolTest {
    static final long MB = 1L << 20;

    /** Records chunk sizes; can be told to fail like a full device. */
    static final class FakeBacking implements DeviceMemoryPool.Backing {
        final List<Long> allocated = new ArrayList<>();
        final List<CUdeviceptr> freed = new ArrayList<>();
        final List<CUdeviceptr> chunks = new ArrayList<>();
        long deviceFree = Long.MAX_VALUE;

        @Override
        public CUdeviceptr allocate(long bytes) {
            if (bytes > deviceFree) {
                throw new DeviceMemoryExhaustedException("fake device: no " + bytes + " bytes");
            }
            deviceFree -= bytes;
            allocated.add(bytes);
            CUdeviceptr p = new CUdeviceptr();
            chunks.add(p);
            return p;
        }

        @Override
        public void free(CUdeviceptr chunk) {
            freed.add(chunk);
        }
    }

    @Test
    void smallBuffersShareOneChunk() {
        FakeBacking dev = new FakeBacking();
        try (DeviceMemoryPool pool = new DeviceMemoryPool(dev, 16 * MB, 64 * MB)) {
            DeviceBuffer a = pool.allocate(1000);
            DeviceBuffer b = pool.allocate(4 * MB);
            DeviceBuffer c = pool.allocate(1);
            assertEquals(List.of(16 * MB), dev.allocated, "one cuMemAlloc for all three");
            assertEquals(0, a.offset());
            assertEquals(1024, b.offset());
            assertEquals(1024 + 4 * MB, c.offset());
            assertEquals(1000, a.bytes());
            assertEquals(1024 + 4 * MB + 256, pool.usedBytes());
            assertEquals(16 * MB, pool.reservedBytes());
        }
        assertEquals(1, dev.freed.size(), "close gives the chunk back");
    }

    @Test
    void aFullChunkStartsAnotherAndABigRequestGetsItsOwn() {
        FakeBacking dev = new FakeBacking();
        try (DeviceMemoryPool pool = new DeviceMemoryPool(dev, 16 * MB, 64 * MB)) {
            pool.allocate(12 * MB);
            DeviceBuffer second = pool.allocate(8 * MB);
            assertEquals(1, second.chunk());
            assertEquals(0, second.offset());
            DeviceBuffer big = pool.allocate(20 * MB + 1);
            assertEquals(2, big.chunk());
            assertEquals(List.of(16 * MB, 16 * MB, 20 * MB + 256), dev.allocated);
            DeviceBuffer small = pool.allocate(3 * MB);
            assertEquals(0, small.chunk(), "the first chunk with room");
            assertEquals(12 * MB, small.offset());
            assertEquals(3, pool.chunks());
        }
    }

    @Test
    void freedRangesAreReusedWithoutAnotherChunk() {
        FakeBacking dev = new FakeBacking();
        try (DeviceMemoryPool pool = new DeviceMemoryPool(dev, 16 * MB, 16 * MB)) {
            for (int step = 0; step < 100; step++) { // a per-step pattern: allocate, use, free
                DeviceBuffer x = pool.allocate(10 * MB);
                DeviceBuffer y = pool.allocate(6 * MB);
                pool.free(x);
                pool.free(y);
            }
            assertEquals(1, dev.allocated.size());
            assertEquals(0, pool.usedBytes());
        }
    }

    @Test
    void theLimitCapsTheLastChunkAndThenRefusesWithTheNumbers() {
        FakeBacking dev = new FakeBacking();
        try (DeviceMemoryPool pool = new DeviceMemoryPool(dev, 16 * MB, 40 * MB)) {
            pool.allocate(16 * MB);
            pool.allocate(16 * MB);
            DeviceBuffer last = pool.allocate(5 * MB);
            assertEquals(List.of(16 * MB, 16 * MB, 8 * MB), dev.allocated, "the third chunk is what the limit leaves");
            assertEquals(2, last.chunk());
            var e = assertThrows(DeviceMemoryExhaustedException.class, () -> pool.allocate(4 * MB));
            assertTrue(e.getMessage().contains(4 * MB + " bytes"), e.getMessage());
            assertTrue(e.getMessage().contains("40 MB limit"), e.getMessage());
            assertEquals(40 * MB, pool.reservedBytes());
            pool.allocate(3 * MB); // what is left of the last chunk still serves
        }
    }

    @Test
    void aDeviceOutOfMemoryPassesThroughAndLeavesThePoolAsItWas() {
        FakeBacking dev = new FakeBacking();
        dev.deviceFree = 20 * MB;
        try (DeviceMemoryPool pool = new DeviceMemoryPool(dev, 16 * MB, 64 * MB)) {
            pool.allocate(16 * MB);
            assertThrows(DeviceMemoryExhaustedException.class, () -> pool.allocate(MB));
            assertEquals(1, pool.chunks());
            assertEquals(16 * MB, pool.reservedBytes());
        }
    }

    @Test
    void doubleFreeAndForeignBuffersAreErrors() {
        FakeBacking dev = new FakeBacking();
        try (DeviceMemoryPool pool = new DeviceMemoryPool(dev, 16 * MB, 64 * MB)) {
            DeviceBuffer a = pool.allocate(100);
            pool.free(a);
            assertThrows(IllegalArgumentException.class, () -> pool.free(a));
            assertThrows(IllegalArgumentException.class, () -> pool.free(new DeviceBuffer(new CUdeviceptr(), 100, 7, 0)));
        }
    }

    @Test
    void closeFreesEveryChunkOnceAndRefusesNewBuffers() {
        FakeBacking dev = new FakeBacking();
        DeviceMemoryPool pool = new DeviceMemoryPool(dev, 16 * MB, 64 * MB);
        pool.allocate(10 * MB);
        pool.allocate(10 * MB);
        pool.close();
        pool.close();
        assertEquals(2, dev.freed.size());
        assertSame(dev.chunks.get(0), dev.freed.get(0));
        assertThrows(IllegalStateException.class, () -> pool.allocate(1));
    }

    @Test
    void bufferRangesAreChecked() {
        FakeBacking dev = new FakeBacking();
        try (DeviceMemoryPool pool = new DeviceMemoryPool(dev, 16 * MB, 64 * MB)) {
            DeviceBuffer a = pool.allocate(1000);
            a.at(0, 1000);
            a.at(996, 4);
            assertThrows(IllegalArgumentException.class, () -> a.at(997, 4));
            assertThrows(IllegalArgumentException.class, () -> a.at(-1, 1));
        }
    }
}
