package dev.loragateway.kernels.cuda;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import jcuda.Pointer;

/**
 * Page-locked host memory ({@code cuMemAllocHost}): the staging side of asynchronous copies, which
 * need pinned memory to overlap with kernels. Allocated once at the largest shape and reused; the
 * caller fills {@link #buffer()} before {@link CudaContext#copyToDevice} and reads it after
 * {@link CudaContext#synchronize()} following {@link CudaContext#copyToHost}. Writing it while a
 * copy from it is in flight corrupts that copy. At most 2 GiB (one {@link ByteBuffer}).
 */
public final class PinnedBuffer implements AutoCloseable {
    private final CudaContext context;
    private final Pointer pointer;
    private final ByteBuffer buffer;

    PinnedBuffer(CudaContext context, Pointer pointer, long bytes) {
        this.context = context;
        this.pointer = pointer;
        this.buffer = pointer.getByteBuffer(0, bytes).order(ByteOrder.nativeOrder());
    }

    /** The whole buffer in native byte order (position 0, limit = capacity); slice it for parts. */
    public ByteBuffer buffer() {
        return buffer.duplicate().order(ByteOrder.nativeOrder());
    }

    /** The buffer as floats. */
    public FloatBuffer floats() {
        return buffer().asFloatBuffer();
    }

    public long bytes() {
        return buffer.capacity();
    }

    /** The host address {@code byteOffset} bytes in, after checking that a range of {@code length} fits. */
    Pointer at(long byteOffset, long length) {
        if (byteOffset < 0 || length < 0 || byteOffset + length > bytes()) {
            throw new IllegalArgumentException("range [" + byteOffset + ", " + (byteOffset + length)
                + ") is outside this pinned buffer of " + bytes() + " bytes");
        }
        return pointer.withByteOffset(byteOffset);
    }

    Pointer pointer() {
        return pointer;
    }

    /** Frees the memory (through the context, which frees what is left when it closes). */
    @Override
    public void close() {
        context.freePinned(this);
    }
}
