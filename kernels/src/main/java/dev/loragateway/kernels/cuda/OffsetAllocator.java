package dev.loragateway.kernels.cuda;

import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;

/**
 * Offset bookkeeping for one contiguous region (a chunk of device memory): hands out aligned
 * {@code [offset, offset + size)} ranges and takes them back. Pure arithmetic, no CUDA call, so it
 * is tested on any machine.
 *
 * <p>First fit over a free list kept sorted by offset; a freed range merges with free neighbours,
 * so freeing everything leaves one free range of the whole capacity again. Sizes round up to the
 * alignment, so every offset stays aligned. Allocation is O(free ranges): the pool serves
 * long-lived buffers (weights, KV cache, adapter slots, per-step buffers sized once for the largest
 * batch), not per-step allocations.
 *
 * <p>Worked example, capacity 1024, alignment 256: {@code allocate(100) = 0} (takes 256),
 * {@code allocate(300) = 256} (takes 512), {@code allocate(300) = -1} (256 left),
 * {@code free(0)}, {@code allocate(200) = 0} (reuses the hole).
 *
 * <p>Not thread-safe: {@link DeviceMemoryPool} serialises calls.
 */
final class OffsetAllocator {
    private final long capacity;
    private final long alignment;
    private final TreeMap<Long, Long> free = new TreeMap<>(); // offset -> size, disjoint, never adjacent
    private final Map<Long, Long> live = new HashMap<>();     // offset -> size (rounded) of each allocation
    private long used;

    /**
     * @param capacity bytes of the region; rounded down to the alignment
     * @param alignment a power of two
     */
    OffsetAllocator(long capacity, long alignment) {
        if (alignment < 1 || Long.bitCount(alignment) != 1) {
            throw new IllegalArgumentException("alignment must be a power of two, got " + alignment);
        }
        this.alignment = alignment;
        this.capacity = capacity / alignment * alignment;
        if (this.capacity < 1) {
            throw new IllegalArgumentException("capacity " + capacity + " is less than one alignment unit of " + alignment);
        }
        free.put(0L, this.capacity);
    }

    /** {@code bytes} rounded up to a multiple of {@code alignment} (at least one unit). */
    static long alignUp(long bytes, long alignment) {
        if (bytes < 0) {
            throw new IllegalArgumentException("negative size " + bytes);
        }
        long units = Math.max(1, (bytes + alignment - 1) / alignment);
        return Math.multiplyExact(units, alignment);
    }

    /** The aligned offset of a new range of at least {@code bytes}, or -1 when no free range fits. */
    long allocate(long bytes) {
        long size = alignUp(bytes, alignment);
        for (Map.Entry<Long, Long> e : free.entrySet()) {
            if (e.getValue() >= size) {
                long offset = e.getKey();
                long rest = e.getValue() - size;
                free.remove(offset);
                if (rest > 0) {
                    free.put(offset + size, rest);
                }
                live.put(offset, size);
                used += size;
                return offset;
            }
        }
        return -1;
    }

    /** Returns the range at {@code offset}; throws if it is not allocated (a double free, a wrong offset). */
    void free(long offset) {
        Long size = live.remove(offset);
        if (size == null) {
            throw new IllegalArgumentException("offset " + offset + " is not allocated in this region (double free?)");
        }
        used -= size;
        long start = offset;
        long end = offset + size;
        Map.Entry<Long, Long> before = free.floorEntry(offset);
        if (before != null && before.getKey() + before.getValue() == start) {
            start = before.getKey();
            free.remove(start);
        }
        Long afterSize = free.get(end);
        if (afterSize != null) {
            free.remove(end);
            end += afterSize;
        }
        free.put(start, end - start);
    }

    /** Bytes the live range at {@code offset} occupies (rounded up), or -1 when none starts there. */
    long sizeAt(long offset) {
        return live.getOrDefault(offset, -1L);
    }

    long capacity() {
        return capacity;
    }

    long used() {
        return used;
    }

    /** The largest request that would succeed now. */
    long largestFree() {
        long max = 0;
        for (long size : free.values()) {
            max = Math.max(max, size);
        }
        return max;
    }

    /** Number of free ranges (1 when nothing is allocated). */
    int freeRanges() {
        return free.size();
    }

    int liveRanges() {
        return live.size();
    }
}
