package dev.loragateway.kernels.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Rows of bfloat16 values packed two to an int so the Vector API widens them with a shift and a
 * mask, with no permutation of the float operand. For a row of n values and vector length L, each
 * full block of 2L values {@code v[b .. b+2L)} becomes L ints whose lane i holds {@code v[b+i]} in
 * its low half and {@code v[b+L+i]} in its high half; so {@code lane << 16} is the float vector
 * {@code v[b .. b+L)} and {@code lane & 0xFFFF0000} is {@code v[b+L .. b+2L)}. The {@code n mod 2L}
 * values after the last full block follow as one int each (the float's bits).
 */
final class Bf16Rows {
    static final VectorSpecies<Float> FS = FloatVector.SPECIES_PREFERRED;
    static final VectorSpecies<Integer> IS = IntVector.SPECIES_PREFERRED;
    static final int L = FS.length();
    static final int BLOCK = 2 * L;

    private Bf16Rows() {
    }

    /** Whether every value is exactly a bfloat16 (its low 16 bits are zero). */
    static boolean exact(float[] v) {
        for (float f : v) {
            if ((Float.floatToRawIntBits(f) & 0xFFFF) != 0) {
                return false;
            }
        }
        return true;
    }

    /** Ints a packed row of {@code n} values takes. */
    static int words(int n) {
        int full = n - n % BLOCK;
        return full / 2 + (n - full);
    }

    /** Packs {@code v[off .. off+n)} (bf16-exact) into {@code out} from {@code pos}; returns the next position. */
    static int pack(float[] v, int off, int n, int[] out, int pos) {
        int full = n - n % BLOCK;
        for (int b = 0; b < full; b += BLOCK) {
            for (int i = 0; i < L; i++) {
                int lo = Float.floatToRawIntBits(v[off + b + i]) >>> 16;
                int hi = Float.floatToRawIntBits(v[off + b + L + i]) & 0xFFFF0000;
                out[pos++] = hi | lo;
            }
        }
        for (int i = full; i < n; i++) {
            out[pos++] = Float.floatToRawIntBits(v[off + i]);
        }
        return pos;
    }

    /** Unpacks a packed row of {@code n} values at {@code p[pos..]} into {@code out[off .. off+n)}; returns the next position. */
    static int unpack(int[] p, int pos, int n, float[] out, int off) {
        int full = n - n % BLOCK;
        for (int b = 0; b < full; b += BLOCK) {
            for (int i = 0; i < L; i++) {
                int w = p[pos++];
                out[off + b + i] = Float.intBitsToFloat(w << 16);
                out[off + b + L + i] = Float.intBitsToFloat(w & 0xFFFF0000);
            }
        }
        for (int i = full; i < n; i++) {
            out[off + i] = Float.intBitsToFloat(p[pos++]);
        }
        return pos;
    }

    /** {@code Σ_j row[j] · x[xo + j]} over a packed row of {@code n} values at {@code p[po..]}. */
    static float dot(int[] p, int po, float[] x, int xo, int n) {
        FloatVector a0 = FloatVector.zero(FS);
        FloatVector a1 = FloatVector.zero(FS);
        int full = n - n % BLOCK;
        int w = po;
        for (int b = 0; b < full; b += BLOCK, w += L) {
            IntVector v = IntVector.fromArray(IS, p, w);
            a0 = v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(FloatVector.fromArray(FS, x, xo + b), a0);
            a1 = v.and(0xFFFF0000).reinterpretAsFloats().fma(FloatVector.fromArray(FS, x, xo + b + L), a1);
        }
        float s = a0.add(a1).reduceLanes(VectorOperators.ADD);
        for (int j = full; j < n; j++, w++) {
            s += Float.intBitsToFloat(p[w]) * x[xo + j];
        }
        return s;
    }

    /** Two dot products of one packed row with {@code x[x0..]} and {@code x[x1..]}. */
    static void dot2(int[] p, int po, float[] x, int x0, int x1, int n, float[] t, int o0, int o1, float sc) {
        FloatVector a0 = FloatVector.zero(FS);
        FloatVector a1 = FloatVector.zero(FS);
        FloatVector b0 = FloatVector.zero(FS);
        FloatVector b1 = FloatVector.zero(FS);
        int full = n - n % BLOCK;
        int w = po;
        for (int b = 0; b < full; b += BLOCK, w += L) {
            IntVector v = IntVector.fromArray(IS, p, w);
            FloatVector lo = v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector hi = v.and(0xFFFF0000).reinterpretAsFloats();
            a0 = lo.fma(FloatVector.fromArray(FS, x, x0 + b), a0);
            a1 = hi.fma(FloatVector.fromArray(FS, x, x0 + b + L), a1);
            b0 = lo.fma(FloatVector.fromArray(FS, x, x1 + b), b0);
            b1 = hi.fma(FloatVector.fromArray(FS, x, x1 + b + L), b1);
        }
        float s0 = a0.add(a1).reduceLanes(VectorOperators.ADD);
        float s1 = b0.add(b1).reduceLanes(VectorOperators.ADD);
        for (int j = full; j < n; j++, w++) {
            float wj = Float.intBitsToFloat(p[w]);
            s0 += wj * x[x0 + j];
            s1 += wj * x[x1 + j];
        }
        t[o0] = sc * s0;
        t[o1] = sc * s1;
    }

    /**
     * {@code y[i][o] += Σ_k t[i][k] · Bᵀ[k][o]} for rows {@code [lo, hi)}, where the r packed rows of
     * Bᵀ (each {@code out} values) start at {@code p[bt]}; walks the output block by block.
     */
    static void expandRows(int[] p, int bt, int r, int out, float[] t, int lo, int hi, int ts, float[] y, int ys) {
        int full = out - out % BLOCK;
        int rowWords = words(out);
        for (int b = 0, w = 0; b < full; b += BLOCK, w += L) {
            for (int i = lo; i < hi; i++) {
                int yo = i * ys + b;
                FloatVector accLo = FloatVector.fromArray(FS, y, yo);
                FloatVector accHi = FloatVector.fromArray(FS, y, yo + L);
                for (int k = 0; k < r; k++) {
                    IntVector v = IntVector.fromArray(IS, p, bt + k * rowWords + w);
                    FloatVector tk = FloatVector.broadcast(FS, t[i * ts + k]);
                    accLo = v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().fma(tk, accLo);
                    accHi = v.and(0xFFFF0000).reinterpretAsFloats().fma(tk, accHi);
                }
                accLo.intoArray(y, yo);
                accHi.intoArray(y, yo + L);
            }
        }
        int tailWord = full / 2;
        for (int o = full; o < out; o++) {
            int w = tailWord + (o - full);
            for (int i = lo; i < hi; i++) {
                float acc = y[i * ys + o];
                for (int k = 0; k < r; k++) {
                    acc += t[i * ts + k] * Float.intBitsToFloat(p[bt + k * rowWords + w]);
                }
                y[i * ys + o] = acc;
            }
        }
    }
}
