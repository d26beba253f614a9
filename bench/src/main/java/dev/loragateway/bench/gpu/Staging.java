package dev.loragateway.bench.gpu;

import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.cuda.CudaContext;
import dev.loragateway.kernels.cuda.DeviceBuffer;
import dev.loragateway.kernels.cuda.PinnedBuffer;
import java.nio.ByteBuffer;
import java.util.SplittableRandom;

/**
 * The bench's host → device uploads through one pinned buffer: small index arrays, and big
 * buffers filled with small random values (a pinned chunk of random bf16 or float32 copied over
 * and over: the values only have to be finite and small, so no NaN or overflow can make a kernel
 * take another path). Every call waits for its copies: the pinned buffer is reused at once.
 */
final class Staging implements AutoCloseable {
    private final CudaContext ctx;
    private final PinnedBuffer pinned;

    Staging(CudaContext ctx, long bytes) {
        this.ctx = ctx;
        this.pinned = ctx.pinned(bytes);
    }

    long bytes() {
        return pinned.bytes();
    }

    DeviceBuffer ints(int[] v) {
        DeviceBuffer d = ctx.pool().allocate(4L * v.length);
        ByteBuffer b = fits(4L * v.length);
        for (int x : v) {
            b.putInt(x);
        }
        return upload(d, 4L * v.length);
    }

    DeviceBuffer longs(long[] v) {
        DeviceBuffer d = ctx.pool().allocate(8L * v.length);
        ByteBuffer b = fits(8L * v.length);
        for (long x : v) {
            b.putLong(x);
        }
        return upload(d, 8L * v.length);
    }

    DeviceBuffer floats(float[] v) {
        DeviceBuffer d = ctx.pool().allocate(4L * v.length);
        ByteBuffer b = fits(4L * v.length);
        for (float x : v) {
            b.putFloat(x);
        }
        return upload(d, 4L * v.length);
    }

    /** Fills {@code bytes} of {@code dst} from {@code offset} with bf16 values uniform in (−amplitude, amplitude). */
    void randomBf16(DeviceBuffer dst, long offset, long bytes, SplittableRandom rnd, float amplitude) {
        ByteBuffer b = pinned.buffer();
        while (b.remaining() >= 2) {
            b.putShort(DType.floatToBf16((float) ((rnd.nextDouble() * 2 - 1) * amplitude)));
        }
        repeat(dst, offset, bytes);
    }

    /** Fills {@code bytes} of {@code dst} from {@code offset} with float32 values uniform in (−amplitude, amplitude). */
    void randomF32(DeviceBuffer dst, long offset, long bytes, SplittableRandom rnd, float amplitude) {
        ByteBuffer b = pinned.buffer();
        while (b.remaining() >= 4) {
            b.putFloat((float) ((rnd.nextDouble() * 2 - 1) * amplitude));
        }
        repeat(dst, offset, bytes);
    }

    /** Copies {@code bytes} of {@code src} back and returns them as floats (after waiting). */
    float[] readFloats(DeviceBuffer src, long bytes) {
        fits(bytes);
        ctx.copyToHost(src, 0, pinned, 0, bytes);
        ctx.synchronize();
        float[] out = new float[(int) (bytes / 4)];
        pinned.buffer().asFloatBuffer().get(out);
        return out;
    }

    private void repeat(DeviceBuffer dst, long offset, long bytes) {
        long chunk = pinned.bytes() & ~15L;
        for (long done = 0; done < bytes; done += chunk) {
            ctx.copyToDevice(pinned, 0, dst, offset + done, Math.min(chunk, bytes - done));
        }
        ctx.synchronize();
    }

    private ByteBuffer fits(long bytes) {
        if (bytes > pinned.bytes()) {
            throw new IllegalArgumentException(bytes + " bytes do not fit the " + pinned.bytes() + "-byte staging buffer");
        }
        return pinned.buffer();
    }

    private DeviceBuffer upload(DeviceBuffer d, long bytes) {
        if (bytes > 0) {
            ctx.copyToDevice(pinned, 0, d, 0, bytes);
            ctx.synchronize();
        }
        return d;
    }

    @Override
    public void close() {
        pinned.close();
    }
}
