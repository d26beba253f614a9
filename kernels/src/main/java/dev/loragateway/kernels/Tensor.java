package dev.loragateway.kernels;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * A read-only n-dimensional array of one {@link DType}, row-major, over a little-endian byte buffer.
 *
 * <p>Weights come from memory-mapped safetensors: the buffer is a mapping of the file, so nothing
 * is copied into the Java heap and 16-bit weights stay 16-bit; kernels widen them as they read.
 * Tests build small tensors from float arrays with {@link #of}.
 */
public final class Tensor {
    private final String name;
    private final DType dtype;
    private final int[] shape;
    private final long size;
    private final ByteBuffer data; // little-endian, position 0, limit = size * dtype.bytes()

    public Tensor(String name, DType dtype, int[] shape, ByteBuffer data) {
        this.name = name;
        this.dtype = dtype;
        this.shape = shape.clone();
        long n = 1;
        for (int d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException(name + ": negative dimension in shape " + Arrays.toString(shape));
            }
            n *= d;
        }
        this.size = n;
        if (data.remaining() != n * dtype.bytes()) {
            throw new IllegalArgumentException(name + ": " + data.remaining() + " bytes for shape "
                + Arrays.toString(shape) + " of " + dtype + " (expected " + n * dtype.bytes() + ")");
        }
        this.data = data.slice().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** A tensor holding {@code values} rounded to {@code dtype}, in a direct buffer. */
    public static Tensor of(String name, DType dtype, float[] values, int... shape) {
        ByteBuffer b = ByteBuffer.allocateDirect(values.length * dtype.bytes()).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
            switch (dtype) {
                case F32: b.putFloat(v); break;
                case BF16: b.putShort(DType.floatToBf16(v)); break;
                case F16: b.putShort(DType.floatToF16(v)); break;
                default: throw new AssertionError(dtype);
            }
        }
        b.flip();
        return new Tensor(name, dtype, shape, b);
    }

    public String name() {
        return name;
    }

    public DType dtype() {
        return dtype;
    }

    public int[] shape() {
        return shape.clone();
    }

    public int rank() {
        return shape.length;
    }

    public int dim(int i) {
        return shape[i];
    }

    /** Number of elements. */
    public long size() {
        return size;
    }

    /** Size in bytes as stored. */
    public long bytes() {
        return size * dtype.bytes();
    }

    /** The raw little-endian storage (a duplicate: callers may move its position freely). */
    public ByteBuffer buffer() {
        return data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** Element {@code i} of the flattened tensor, widened to float. */
    public float get(long i) {
        int at = Math.toIntExact(i * dtype.bytes());
        switch (dtype) {
            case F32: return data.getFloat(at);
            case BF16: return DType.bf16ToFloat(data.getShort(at));
            case F16: return DType.f16ToFloat(data.getShort(at));
            default: throw new AssertionError(dtype);
        }
    }

    /** Copies row {@code row} of a 2-D tensor into {@code out[off..off+cols)}, widened to float. */
    public void row(int row, float[] out, int off) {
        int cols = shape[shape.length - 1];
        long base = (long) row * cols;
        for (int c = 0; c < cols; c++) {
            out[off + c] = get(base + c);
        }
    }

    /** All elements widened to float (for small tensors: norms, biases, tests). */
    public float[] toFloats() {
        float[] out = new float[Math.toIntExact(size)];
        for (int i = 0; i < out.length; i++) {
            out[i] = get(i);
        }
        return out;
    }

    /** Checks that the tensor has exactly this shape; the message names the tensor and both shapes. */
    public Tensor expectShape(int... expected) {
        if (!Arrays.equals(shape, expected)) {
            throw new IllegalArgumentException("tensor " + name + " has shape " + Arrays.toString(shape)
                + ", expected " + Arrays.toString(expected));
        }
        return this;
    }

    @Override
    public String toString() {
        return name + " " + dtype + Arrays.toString(shape);
    }
}
