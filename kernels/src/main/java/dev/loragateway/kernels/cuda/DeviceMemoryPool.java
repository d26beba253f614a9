package dev.loragateway.kernels.cuda;

import java.util.ArrayList;
import java.util.List;
import jcuda.driver.CUdeviceptr;

/**
 * Device memory in a few big chunks, sub-allocated by offset: {@code cuMemAlloc} runs only when a
 * request fits in no existing chunk (in practice while the model, KV cache and per-step buffers are
 * set up), never per step, and freeing returns the range to its chunk, not to the driver.
 *
 * <p>A new chunk is {@code chunkBytes}, or the request rounded up when it is bigger, capped by what
 * is left of {@code limitBytes}. When the cap leaves too little, or the device refuses the chunk,
 * {@link #allocate} throws {@link DeviceMemoryExhaustedException} with the numbers. Every range is
 * 256-byte aligned ({@link #ALIGNMENT}; {@code cuMemAlloc} itself returns at least 256-aligned
 * chunks), which covers vectorised 16-byte loads and 128-byte coalescing.
 *
 * <p>Thread-safe (one lock; allocation is rare). Chunks come from a {@link Backing}: the real one
 * is {@code cuMemAlloc}/{@code cuMemFree} in the context ({@link CudaContext#pool()}); tests pass a
 * fake, so the growth and limit arithmetic runs without a GPU.
 */
public final class DeviceMemoryPool implements AutoCloseable {
    public static final long ALIGNMENT = 256;

    /** Where chunks come from. */
    interface Backing {
        /** A new chunk of exactly {@code bytes}; throws {@link DeviceMemoryExhaustedException} when out of memory. */
        CUdeviceptr allocate(long bytes);

        void free(CUdeviceptr chunk);
    }

    private final Backing backing;
    private final long chunkBytes;
    private final long limitBytes;
    private final List<CUdeviceptr> bases = new ArrayList<>();        // [chunk] device address of the chunk
    private final List<OffsetAllocator> chunks = new ArrayList<>();   // [chunk] its ranges
    private long reserved;  // bytes of all chunks
    private boolean closed;

    /**
     * @param chunkBytes size of a regular chunk
     * @param limitBytes most bytes all chunks together may take from the device
     */
    DeviceMemoryPool(Backing backing, long chunkBytes, long limitBytes) {
        if (chunkBytes < ALIGNMENT || limitBytes < chunkBytes) {
            throw new IllegalArgumentException("pool chunk " + chunkBytes + " bytes and limit " + limitBytes
                + " bytes: the chunk must be at least " + ALIGNMENT + " and at most the limit");
        }
        this.backing = backing;
        this.chunkBytes = OffsetAllocator.alignUp(chunkBytes, ALIGNMENT);
        this.limitBytes = limitBytes / ALIGNMENT * ALIGNMENT;
    }

    /** A buffer of {@code bytes} (0 is allowed and takes one alignment unit). */
    public synchronized DeviceBuffer allocate(long bytes) {
        if (closed) {
            throw new IllegalStateException("device memory pool is closed");
        }
        long need = OffsetAllocator.alignUp(bytes, ALIGNMENT);
        for (int c = 0; c < chunks.size(); c++) {
            long offset = chunks.get(c).allocate(need);
            if (offset >= 0) {
                return new DeviceBuffer(bases.get(c).withByteOffset(offset), bytes, c, offset);
            }
        }
        long size = Math.min(Math.max(chunkBytes, need), limitBytes - reserved);
        if (size < need) {
            throw new DeviceMemoryExhaustedException("device memory pool cannot place " + bytes + " bytes: "
                + mb(reserved) + " of its " + mb(limitBytes) + " limit is in " + chunks.size()
                + " chunks (largest free range " + largestFree() + " bytes) and the rest, " + (limitBytes - reserved)
                + " bytes, is too small");
        }
        CUdeviceptr base = backing.allocate(size);
        OffsetAllocator chunk = new OffsetAllocator(size, ALIGNMENT);
        bases.add(base);
        chunks.add(chunk);
        reserved += size;
        long offset = chunk.allocate(need);
        return new DeviceBuffer(base.withByteOffset(offset), bytes, chunks.size() - 1, offset);
    }

    /** Returns a buffer's range to its chunk. Throws on a buffer this pool did not hand out or already took back. */
    public synchronized void free(DeviceBuffer buffer) {
        if (closed) {
            return; // the chunks are gone already
        }
        int c = buffer.chunk();
        if (c < 0 || c >= chunks.size() || chunks.get(c).sizeAt(buffer.offset()) < buffer.bytes()) {
            throw new IllegalArgumentException("device buffer (chunk " + c + ", offset " + buffer.offset() + ", "
                + buffer.bytes() + " bytes) is not live in this pool (double free, or another pool's?)");
        }
        chunks.get(c).free(buffer.offset());
    }

    /** Bytes taken from the device (all chunks). */
    public synchronized long reservedBytes() {
        return reserved;
    }

    /** Bytes in live buffers, each rounded up to the alignment. */
    public synchronized long usedBytes() {
        long used = 0;
        for (OffsetAllocator c : chunks) {
            used += c.used();
        }
        return used;
    }

    public long limitBytes() {
        return limitBytes;
    }

    public synchronized int chunks() {
        return chunks.size();
    }

    private long largestFree() {
        long max = 0;
        for (OffsetAllocator c : chunks) {
            max = Math.max(max, c.largestFree());
        }
        return max;
    }

    /** Gives every chunk back to the device; buffers still out become invalid. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (CUdeviceptr base : bases) {
            backing.free(base);
        }
        bases.clear();
        chunks.clear();
        reserved = 0;
    }

    private static String mb(long bytes) {
        return (bytes >> 20) + " MB";
    }
}
