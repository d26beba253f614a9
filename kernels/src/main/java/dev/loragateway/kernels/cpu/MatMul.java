package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.DType;

import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * {@code out[r][j] = Σ_k x[r][k] · W[j][k]} for rows r and output columns j in {@code [j0, j1)}:
 * rows × Wᵀ with {@code W: [outDim, in]} as stored (F32, BF16 or F16), {@code x: [rows, in]} float32.
 *
 * <p>16-bit weights are widened in registers without a conversion instruction: an int lane holds
 * two adjacent 16-bit weights, so {@code lane << 16} is the even element as a float (bf16) and
 * {@code lane & 0xFFFF0000} the odd one. The input row is therefore de-interleaved once per call
 * into {@link #permute} order (per block of 2·L elements: L even ones, then L odd ones), and every
 * weight row is read exactly once per block of up to four input rows.
 *
 * <p>Weights are read through a {@link WeightLoads} {@code ld} from {@code w}, the handle
 * {@code ld.open} made of the weight buffer for one call on one thread ({@link CpuKernelForm}: how
 * this JVM loads vectors from memory).
 */
final class MatMul {
    static final VectorSpecies<Float> FS = FloatVector.SPECIES_PREFERRED;
    static final VectorSpecies<Integer> IS = IntVector.SPECIES_PREFERRED;
    static final int L = FS.length();
    /** Elements of a 16-bit weight row covered by one int vector. */
    static final int BLOCK16 = 2 * L;
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    static final int F16_EXP_MASK = 0x7FFF;

    private MatMul() {
    }

    /** Elements of {@code in} covered by whole 16-bit blocks; the rest is done scalar. */
    static int blocked16(int in) {
        return in - in % BLOCK16;
    }

    /**
     * Writes {@code x[xo..xo+in)} de-interleaved into {@code xp[po..po+in)}: inside each block of
     * 2L elements, evens first then odds; the tail after the last whole block stays in order.
     */
    static void permute(float[] x, int xo, int in, float[] xp, int po) {
        int full = blocked16(in);
        for (int b = 0; b < full; b += BLOCK16) {
            for (int i = 0; i < L; i++) {
                xp[po + b + i] = x[xo + b + 2 * i];
                xp[po + b + L + i] = x[xo + b + 2 * i + 1];
            }
        }
        System.arraycopy(x, xo + full, xp, po + full, in - full);
    }

    /**
     * Computes columns {@code [j0, j1)} for {@code rows} rows. {@code x} is the plain input for F32
     * weights and the {@link #permute}d input for 16-bit weights; rows are {@code in} apart in
     * {@code x} and {@code outStride} apart in {@code out}.
     */
    static void columns(DType dtype, WeightLoads ld, Object w, int in, float[] x, int rows, float[] out, int outStride, int j0, int j1) {
        int r = 0;
        for (; r + 4 <= rows; r += 4) {
            for (int j = j0; j < j1; j++) {
                switch (dtype) {
                    case BF16: half16x4(ld, w, j, in, x, r, out, outStride, false); break;
                    case F16: half16x4(ld, w, j, in, x, r, out, outStride, true); break;
                    default: f32x4(ld, w, j, in, x, r, out, outStride); break;
                }
            }
        }
        for (; r < rows; r++) {
            for (int j = j0; j < j1; j++) {
                float v;
                switch (dtype) {
                    case BF16: v = bf16x1(ld, w, j, in, x, r * in); break;
                    case F16: v = f16x1(ld, w, j, in, x, r * in); break;
                    default: v = f32x1(ld, w, j, in, x, r * in); break;
                }
                out[r * outStride + j] = v;
            }
        }
    }


    /** Column j of four output rows from {@code o}, {@code outStride} apart. */
    private static void store4(float[] out, int o, int outStride, float s0, float s1, float s2, float s3) {
        out[o] = s0;
        out[o + outStride] = s1;
        out[o + 2 * outStride] = s2;
        out[o + 3 * outStride] = s3;
    }

    // ---- F32 -------------------------------------------------------------------------------

    static float f32x1(WeightLoads ld, Object w, int j, int in, float[] x, int xo) {
        int base = j * in * 4;
        FloatVector a0 = FloatVector.zero(FS);
        FloatVector a1 = FloatVector.zero(FS);
        int k = 0;
        int upper = in - in % (2 * L);
        for (; k < upper; k += 2 * L) {
            FloatVector w0 = ld.floats(w, base + k * 4);
            FloatVector w1 = ld.floats(w, base + (k + L) * 4);
            a0 = w0.fma(FloatVector.fromArray(FS, x, xo + k), a0);
            a1 = w1.fma(FloatVector.fromArray(FS, x, xo + k + L), a1);
        }
        float s = a0.add(a1).reduceLanes(VectorOperators.ADD);
        for (; k < in; k++) {
            s += ld.f32(w, base + k * 4) * x[xo + k];
        }
        return s;
    }

    static void f32x4(WeightLoads ld, Object w, int j, int in, float[] x, int r, float[] out, int outStride) {
        int base = j * in * 4;
        int x0 = r * in;
        int x1 = x0 + in;
        int x2 = x1 + in;
        int x3 = x2 + in;
        FloatVector a0 = FloatVector.zero(FS);
        FloatVector a1 = FloatVector.zero(FS);
        FloatVector a2 = FloatVector.zero(FS);
        FloatVector a3 = FloatVector.zero(FS);
        int k = 0;
        int upper = in - in % L;
        for (; k < upper; k += L) {
            FloatVector wv = ld.floats(w, base + k * 4);
            a0 = wv.fma(FloatVector.fromArray(FS, x, x0 + k), a0);
            a1 = wv.fma(FloatVector.fromArray(FS, x, x1 + k), a1);
            a2 = wv.fma(FloatVector.fromArray(FS, x, x2 + k), a2);
            a3 = wv.fma(FloatVector.fromArray(FS, x, x3 + k), a3);
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD);
        float s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD);
        float s3 = a3.reduceLanes(VectorOperators.ADD);
        for (; k < in; k++) {
            float wk = ld.f32(w, base + k * 4);
            s0 += wk * x[x0 + k];
            s1 += wk * x[x1 + k];
            s2 += wk * x[x2 + k];
            s3 += wk * x[x3 + k];
        }
        store4(out, r * outStride + j, outStride, s0, s1, s2, s3);
    }

    // ---- BF16 ------------------------------------------------------------------------------
    // bfloat16 → float is the 16 bits moved to the top: lane << 16 for the even weight of a pair,
    // lane & 0xFFFF0000 for the odd one.

    private static FloatVector bf16Even(IntVector v) {
        return v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    private static FloatVector bf16Odd(IntVector v) {
        return v.and(0xFFFF0000).reinterpretAsFloats();
    }

    static float bf16x1(WeightLoads ld, Object w, int j, int in, float[] xp, int xo) {
        int base = j * in * 2;
        FloatVector a0 = FloatVector.zero(FS);
        FloatVector a1 = FloatVector.zero(FS);
        FloatVector a2 = FloatVector.zero(FS);
        FloatVector a3 = FloatVector.zero(FS);
        int full = blocked16(in);
        int k = 0;
        for (; k + 2 * BLOCK16 <= full; k += 2 * BLOCK16) {
            IntVector v = ld.pairs(w, base + k * 2);
            IntVector u = ld.pairs(w, base + (k + BLOCK16) * 2);
            a0 = v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(FloatVector.fromArray(FS, xp, xo + k), a0);
            a1 = v.and(0xFFFF0000).reinterpretAsFloats().fma(FloatVector.fromArray(FS, xp, xo + k + L), a1);
            a2 = u.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(FloatVector.fromArray(FS, xp, xo + k + BLOCK16), a2);
            a3 = u.and(0xFFFF0000).reinterpretAsFloats().fma(FloatVector.fromArray(FS, xp, xo + k + BLOCK16 + L), a3);
        }
        for (; k < full; k += BLOCK16) {
            IntVector v = ld.pairs(w, base + k * 2);
            a0 = v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(FloatVector.fromArray(FS, xp, xo + k), a0);
            a1 = v.and(0xFFFF0000).reinterpretAsFloats().fma(FloatVector.fromArray(FS, xp, xo + k + L), a1);
        }
        float s = a0.add(a1).add(a2.add(a3)).reduceLanes(VectorOperators.ADD);
        for (; k < in; k++) {
            s += DType.bf16ToFloat(ld.bits16(w, base + k * 2)) * xp[xo + k];
        }
        return s;
    }

    // ---- F16 -------------------------------------------------------------------------------
    // half → float without a conversion instruction: move exponent+mantissa up by 13 bits, put the
    // sign on top, and multiply by 2^112 (the exponent-bias difference). Exact for normal and
    // subnormal halves; infinities and NaN become large finite values (weights are validated finite).

    private static FloatVector f16Even(IntVector v) {
        IntVector mag = v.and(F16_EXP_MASK).lanewise(VectorOperators.LSHL, 13);
        IntVector sign = v.and(0x8000).lanewise(VectorOperators.LSHL, 16);
        return mag.or(sign).reinterpretAsFloats().mul(0x1p112f);
    }

    private static FloatVector f16Odd(IntVector v) {
        IntVector mag = v.lanewise(VectorOperators.LSHR, 3).and(F16_EXP_MASK << 13);
        IntVector sign = v.and(0x80000000);
        return mag.or(sign).reinterpretAsFloats().mul(0x1p112f);
    }

    static float f16x1(WeightLoads ld, Object w, int j, int in, float[] xp, int xo) {
        int base = j * in * 2;
        FloatVector a0 = FloatVector.zero(FS);
        FloatVector a1 = FloatVector.zero(FS);
        int full = blocked16(in);
        int k = 0;
        for (; k < full; k += BLOCK16) {
            IntVector v = ld.pairs(w, base + k * 2);
            a0 = f16Even(v).fma(FloatVector.fromArray(FS, xp, xo + k), a0);
            a1 = f16Odd(v).fma(FloatVector.fromArray(FS, xp, xo + k + L), a1);
        }
        float s = a0.add(a1).reduceLanes(VectorOperators.ADD);
        for (; k < in; k++) {
            s += DType.f16ToFloat(ld.bits16(w, base + k * 2)) * xp[xo + k];
        }
        return s;
    }

    // ---- BF16 or F16, four rows ----------------------------------------------------------------

    /**
     * Input rows {@code [r, r + 4)} against weight row j, BF16 or (when {@code f16}) F16: one method
     * for both, as the 4-row GEMV only runs off the server's path (the kernel-form probe, the
     * baseline of MatMulPerf; two or more rows take {@link MatMulBatched}).
     */
    static void half16x4(WeightLoads ld, Object w, int j, int in, float[] xp, int r, float[] out, int outStride, boolean f16) {
        int base = j * in * 2;
        int x0 = r * in;
        int x1 = x0 + in;
        int x2 = x1 + in;
        int x3 = x2 + in;
        FloatVector e0 = FloatVector.zero(FS), o0 = FloatVector.zero(FS);
        FloatVector e1 = FloatVector.zero(FS), o1 = FloatVector.zero(FS);
        FloatVector e2 = FloatVector.zero(FS), o2 = FloatVector.zero(FS);
        FloatVector e3 = FloatVector.zero(FS), o3 = FloatVector.zero(FS);
        int full = blocked16(in);
        int k = 0;
        for (; k < full; k += BLOCK16) {
            IntVector v = ld.pairs(w, base + k * 2);
            FloatVector we = f16 ? f16Even(v) : bf16Even(v);
            FloatVector wo = f16 ? f16Odd(v) : bf16Odd(v);
            e0 = we.fma(FloatVector.fromArray(FS, xp, x0 + k), e0);
            o0 = wo.fma(FloatVector.fromArray(FS, xp, x0 + k + L), o0);
            e1 = we.fma(FloatVector.fromArray(FS, xp, x1 + k), e1);
            o1 = wo.fma(FloatVector.fromArray(FS, xp, x1 + k + L), o1);
            e2 = we.fma(FloatVector.fromArray(FS, xp, x2 + k), e2);
            o2 = wo.fma(FloatVector.fromArray(FS, xp, x2 + k + L), o2);
            e3 = we.fma(FloatVector.fromArray(FS, xp, x3 + k), e3);
            o3 = wo.fma(FloatVector.fromArray(FS, xp, x3 + k + L), o3);
        }
        float s0 = e0.add(o0).reduceLanes(VectorOperators.ADD);
        float s1 = e1.add(o1).reduceLanes(VectorOperators.ADD);
        float s2 = e2.add(o2).reduceLanes(VectorOperators.ADD);
        float s3 = e3.add(o3).reduceLanes(VectorOperators.ADD);
        for (; k < in; k++) {
            short bits = ld.bits16(w, base + k * 2);
            float wk = f16 ? DType.f16ToFloat(bits) : DType.bf16ToFloat(bits);
            s0 += wk * xp[x0 + k];
            s1 += wk * xp[x1 + k];
            s2 += wk * xp[x2 + k];
            s3 += wk * xp[x3 + k];
        }
        store4(out, r * outStride + j, outStride, s0, s1, s2, s3);
    }
}
