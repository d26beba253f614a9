package dev.loragateway.kernels.cpu;

import static dev.loragateway.kernels.cpu.MatMul.*;
import static dev.loragateway.kernels.cpu.MatMulBatched.*;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * The generated F32 register-block kernels of {@link MatMulBatched} (4, 2 or 1 input rows
 * times 4 or 1 weight rows). They repeat one pattern and stay flat on purpose: Java 17's C2 does
 * not inline helpers into methods this large. The weight loads go through {@link WeightLoads}
 * ({@code ld}, {@code w}: the form chosen for this JVM and its handle), whose one-line methods C2
 * does inline here (checked with {@code -XX:+LogCompilation} on Java 17 and 25).
 */
final class MatMulF32Kernels {
    private MatMulF32Kernels() {
    }
    static void f32K4x4t(WeightLoads ld, Object w, int wo, int rowStride, int in, float[] xq, int xo, float[] out, int oo, int outStride, boolean add) {
        int b0 = wo;
        int b1 = wo + 1 * rowStride;
        int b2 = wo + 2 * rowStride;
        int b3 = wo + 3 * rowStride;
        FloatVector a00 = FloatVector.zero(FS); FloatVector a01 = FloatVector.zero(FS); FloatVector a02 = FloatVector.zero(FS); FloatVector a03 = FloatVector.zero(FS);
        FloatVector a10 = FloatVector.zero(FS); FloatVector a11 = FloatVector.zero(FS); FloatVector a12 = FloatVector.zero(FS); FloatVector a13 = FloatVector.zero(FS);
        FloatVector a20 = FloatVector.zero(FS); FloatVector a21 = FloatVector.zero(FS); FloatVector a22 = FloatVector.zero(FS); FloatVector a23 = FloatVector.zero(FS);
        FloatVector a30 = FloatVector.zero(FS); FloatVector a31 = FloatVector.zero(FS); FloatVector a32 = FloatVector.zero(FS); FloatVector a33 = FloatVector.zero(FS);
        int full = in - in % L;
        int p = xo;
        int k = 0;
        for (; k < full; k += L, p += 4 * L) {
            FloatVector y0 = FloatVector.fromArray(FS, xq, p + 0 * L);
            FloatVector y1 = FloatVector.fromArray(FS, xq, p + 1 * L);
            FloatVector y2 = FloatVector.fromArray(FS, xq, p + 2 * L);
            FloatVector y3 = FloatVector.fromArray(FS, xq, p + 3 * L);
            FloatVector v0 = ld.floats(w, b0 + k * 4);
            a00 = v0.fma(y0, a00); a10 = v0.fma(y1, a10); a20 = v0.fma(y2, a20); a30 = v0.fma(y3, a30);
            FloatVector v1 = ld.floats(w, b1 + k * 4);
            a01 = v1.fma(y0, a01); a11 = v1.fma(y1, a11); a21 = v1.fma(y2, a21); a31 = v1.fma(y3, a31);
            FloatVector v2 = ld.floats(w, b2 + k * 4);
            a02 = v2.fma(y0, a02); a12 = v2.fma(y1, a12); a22 = v2.fma(y2, a22); a32 = v2.fma(y3, a32);
            FloatVector v3 = ld.floats(w, b3 + k * 4);
            a03 = v3.fma(y0, a03); a13 = v3.fma(y1, a13); a23 = v3.fma(y2, a23); a33 = v3.fma(y3, a33);
        }
        float[] s = new float[16];
        if (L == 16) { // the lane-swap tree: one vector of the 16 sums
            FloatVector t8_0 = a00.blend(a20, M8).add(a20.blend(a00, M8).rearrange(SW8));
            FloatVector t8_1 = a10.blend(a30, M8).add(a30.blend(a10, M8).rearrange(SW8));
            FloatVector t8_2 = a02.blend(a22, M8).add(a22.blend(a02, M8).rearrange(SW8));
            FloatVector t8_3 = a12.blend(a32, M8).add(a32.blend(a12, M8).rearrange(SW8));
            FloatVector t8_4 = a01.blend(a21, M8).add(a21.blend(a01, M8).rearrange(SW8));
            FloatVector t8_5 = a11.blend(a31, M8).add(a31.blend(a11, M8).rearrange(SW8));
            FloatVector t8_6 = a03.blend(a23, M8).add(a23.blend(a03, M8).rearrange(SW8));
            FloatVector t8_7 = a13.blend(a33, M8).add(a33.blend(a13, M8).rearrange(SW8));
            FloatVector t4_0 = t8_0.blend(t8_1, M4).add(t8_1.blend(t8_0, M4).rearrange(SW4));
            FloatVector t4_1 = t8_2.blend(t8_3, M4).add(t8_3.blend(t8_2, M4).rearrange(SW4));
            FloatVector t4_2 = t8_4.blend(t8_5, M4).add(t8_5.blend(t8_4, M4).rearrange(SW4));
            FloatVector t4_3 = t8_6.blend(t8_7, M4).add(t8_7.blend(t8_6, M4).rearrange(SW4));
            FloatVector t2_0 = t4_0.blend(t4_1, M2).add(t4_1.blend(t4_0, M2).rearrange(SW2));
            FloatVector t2_1 = t4_2.blend(t4_3, M2).add(t4_3.blend(t4_2, M2).rearrange(SW2));
            FloatVector t1_0 = t2_0.blend(t2_1, M1).add(t2_1.blend(t2_0, M1).rearrange(SW1));
            t1_0.intoArray(s, 0);
        } else { // narrower vectors (AVX2: 8 lanes) have no 16-way tree
            s[0] = a00.reduceLanes(VectorOperators.ADD); s[1] = a01.reduceLanes(VectorOperators.ADD); s[2] = a02.reduceLanes(VectorOperators.ADD); s[3] = a03.reduceLanes(VectorOperators.ADD);
            s[4] = a10.reduceLanes(VectorOperators.ADD); s[5] = a11.reduceLanes(VectorOperators.ADD); s[6] = a12.reduceLanes(VectorOperators.ADD); s[7] = a13.reduceLanes(VectorOperators.ADD);
            s[8] = a20.reduceLanes(VectorOperators.ADD); s[9] = a21.reduceLanes(VectorOperators.ADD); s[10] = a22.reduceLanes(VectorOperators.ADD); s[11] = a23.reduceLanes(VectorOperators.ADD);
            s[12] = a30.reduceLanes(VectorOperators.ADD); s[13] = a31.reduceLanes(VectorOperators.ADD); s[14] = a32.reduceLanes(VectorOperators.ADD); s[15] = a33.reduceLanes(VectorOperators.ADD);
        }
        if (k < in) {
            int tail = in - full;
            for (int t = 0; t < tail; t++) {
                float w0 = ld.f32(w, b0 + (k + t) * 4);
                float w1 = ld.f32(w, b1 + (k + t) * 4);
                float w2 = ld.f32(w, b2 + (k + t) * 4);
                float w3 = ld.f32(w, b3 + (k + t) * 4);
                float y0 = xq[p + 0 * tail + t];
                s[0] += w0 * y0; s[1] += w1 * y0; s[2] += w2 * y0; s[3] += w3 * y0;
                float y1 = xq[p + 1 * tail + t];
                s[4] += w0 * y1; s[5] += w1 * y1; s[6] += w2 * y1; s[7] += w3 * y1;
                float y2 = xq[p + 2 * tail + t];
                s[8] += w0 * y2; s[9] += w1 * y2; s[10] += w2 * y2; s[11] += w3 * y2;
                float y3 = xq[p + 3 * tail + t];
                s[12] += w0 * y3; s[13] += w1 * y3; s[14] += w2 * y3; s[15] += w3 * y3;
            }
        }
        if (add) {
            int o0 = oo;
            out[o0 + 0] += s[0]; out[o0 + 1] += s[1]; out[o0 + 2] += s[2]; out[o0 + 3] += s[3];
            int o1 = oo + 1 * outStride;
            out[o1 + 0] += s[4]; out[o1 + 1] += s[5]; out[o1 + 2] += s[6]; out[o1 + 3] += s[7];
            int o2 = oo + 2 * outStride;
            out[o2 + 0] += s[8]; out[o2 + 1] += s[9]; out[o2 + 2] += s[10]; out[o2 + 3] += s[11];
            int o3 = oo + 3 * outStride;
            out[o3 + 0] += s[12]; out[o3 + 1] += s[13]; out[o3 + 2] += s[14]; out[o3 + 3] += s[15];
        } else {
            int o0 = oo;
            out[o0 + 0] = s[0]; out[o0 + 1] = s[1]; out[o0 + 2] = s[2]; out[o0 + 3] = s[3];
            int o1 = oo + 1 * outStride;
            out[o1 + 0] = s[4]; out[o1 + 1] = s[5]; out[o1 + 2] = s[6]; out[o1 + 3] = s[7];
            int o2 = oo + 2 * outStride;
            out[o2 + 0] = s[8]; out[o2 + 1] = s[9]; out[o2 + 2] = s[10]; out[o2 + 3] = s[11];
            int o3 = oo + 3 * outStride;
            out[o3 + 0] = s[12]; out[o3 + 1] = s[13]; out[o3 + 2] = s[14]; out[o3 + 3] = s[15];
        }
    }

    /** Rows [0, 4) of the panel at {@code xo} times W rows [j, j + 1) at byte {@code wo}. */
    static void f32K4x1(WeightLoads ld, Object w, int wo, int rowStride, int in, float[] xq, int xo, float[] out, int oo, int outStride, boolean add) {
        int b0 = wo;
        FloatVector a00 = FloatVector.zero(FS);
        FloatVector a10 = FloatVector.zero(FS);
        FloatVector a20 = FloatVector.zero(FS);
        FloatVector a30 = FloatVector.zero(FS);
        int full = in - in % L;
        int p = xo;
        int k = 0;
        for (; k < full; k += L, p += 4 * L) {
            FloatVector v0 = ld.floats(w, b0 + k * 4);
            FloatVector y0 = FloatVector.fromArray(FS, xq, p + 0 * L);
            a00 = v0.fma(y0, a00);
            FloatVector y1 = FloatVector.fromArray(FS, xq, p + 1 * L);
            a10 = v0.fma(y1, a10);
            FloatVector y2 = FloatVector.fromArray(FS, xq, p + 2 * L);
            a20 = v0.fma(y2, a20);
            FloatVector y3 = FloatVector.fromArray(FS, xq, p + 3 * L);
            a30 = v0.fma(y3, a30);
        }
        float s00 = a00.reduceLanes(VectorOperators.ADD);
        float s10 = a10.reduceLanes(VectorOperators.ADD);
        float s20 = a20.reduceLanes(VectorOperators.ADD);
        float s30 = a30.reduceLanes(VectorOperators.ADD);
        if (k < in) {
            int tail = in - full;
            for (int t = 0; t < tail; t++) {
                float w0 = ld.f32(w, b0 + (k + t) * 4);
                float y0 = xq[p + 0 * tail + t];
                s00 += w0 * y0;
                float y1 = xq[p + 1 * tail + t];
                s10 += w0 * y1;
                float y2 = xq[p + 2 * tail + t];
                s20 += w0 * y2;
                float y3 = xq[p + 3 * tail + t];
                s30 += w0 * y3;
            }
        }
        if (add) {
            int o0 = oo;
            out[o0 + 0] += s00;
            int o1 = oo + 1 * outStride;
            out[o1 + 0] += s10;
            int o2 = oo + 2 * outStride;
            out[o2 + 0] += s20;
            int o3 = oo + 3 * outStride;
            out[o3 + 0] += s30;
        } else {
            int o0 = oo;
            out[o0 + 0] = s00;
            int o1 = oo + 1 * outStride;
            out[o1 + 0] = s10;
            int o2 = oo + 2 * outStride;
            out[o2 + 0] = s20;
            int o3 = oo + 3 * outStride;
            out[o3 + 0] = s30;
        }
    }

    /** Rows [0, 2) of the panel at {@code xo} times W rows [j, j + 4) at byte {@code wo}. */
    static void f32K2x4(WeightLoads ld, Object w, int wo, int rowStride, int in, float[] xq, int xo, float[] out, int oo, int outStride, boolean add) {
        int b0 = wo;
        int b1 = wo + 1 * rowStride;
        int b2 = wo + 2 * rowStride;
        int b3 = wo + 3 * rowStride;
        FloatVector a00 = FloatVector.zero(FS); FloatVector a01 = FloatVector.zero(FS); FloatVector a02 = FloatVector.zero(FS); FloatVector a03 = FloatVector.zero(FS);
        FloatVector a10 = FloatVector.zero(FS); FloatVector a11 = FloatVector.zero(FS); FloatVector a12 = FloatVector.zero(FS); FloatVector a13 = FloatVector.zero(FS);
        int full = in - in % L;
        int p = xo;
        int k = 0;
        for (; k < full; k += L, p += 2 * L) {
            FloatVector v0 = ld.floats(w, b0 + k * 4);
            FloatVector v1 = ld.floats(w, b1 + k * 4);
            FloatVector v2 = ld.floats(w, b2 + k * 4);
            FloatVector v3 = ld.floats(w, b3 + k * 4);
            FloatVector y0 = FloatVector.fromArray(FS, xq, p + 0 * L);
            a00 = v0.fma(y0, a00); a01 = v1.fma(y0, a01); a02 = v2.fma(y0, a02); a03 = v3.fma(y0, a03);
            FloatVector y1 = FloatVector.fromArray(FS, xq, p + 1 * L);
            a10 = v0.fma(y1, a10); a11 = v1.fma(y1, a11); a12 = v2.fma(y1, a12); a13 = v3.fma(y1, a13);
        }
        float s00 = a00.reduceLanes(VectorOperators.ADD);
        float s01 = a01.reduceLanes(VectorOperators.ADD);
        float s02 = a02.reduceLanes(VectorOperators.ADD);
        float s03 = a03.reduceLanes(VectorOperators.ADD);
        float s10 = a10.reduceLanes(VectorOperators.ADD);
        float s11 = a11.reduceLanes(VectorOperators.ADD);
        float s12 = a12.reduceLanes(VectorOperators.ADD);
        float s13 = a13.reduceLanes(VectorOperators.ADD);
        if (k < in) {
            int tail = in - full;
            for (int t = 0; t < tail; t++) {
                float w0 = ld.f32(w, b0 + (k + t) * 4);
                float w1 = ld.f32(w, b1 + (k + t) * 4);
                float w2 = ld.f32(w, b2 + (k + t) * 4);
                float w3 = ld.f32(w, b3 + (k + t) * 4);
                float y0 = xq[p + 0 * tail + t];
                s00 += w0 * y0; s01 += w1 * y0; s02 += w2 * y0; s03 += w3 * y0;
                float y1 = xq[p + 1 * tail + t];
                s10 += w0 * y1; s11 += w1 * y1; s12 += w2 * y1; s13 += w3 * y1;
            }
        }
        if (add) {
            int o0 = oo;
            out[o0 + 0] += s00; out[o0 + 1] += s01; out[o0 + 2] += s02; out[o0 + 3] += s03;
            int o1 = oo + 1 * outStride;
            out[o1 + 0] += s10; out[o1 + 1] += s11; out[o1 + 2] += s12; out[o1 + 3] += s13;
        } else {
            int o0 = oo;
            out[o0 + 0] = s00; out[o0 + 1] = s01; out[o0 + 2] = s02; out[o0 + 3] = s03;
            int o1 = oo + 1 * outStride;
            out[o1 + 0] = s10; out[o1 + 1] = s11; out[o1 + 2] = s12; out[o1 + 3] = s13;
        }
    }

    /** Rows [0, 2) of the panel at {@code xo} times W rows [j, j + 1) at byte {@code wo}. */
    static void f32K2x1(WeightLoads ld, Object w, int wo, int rowStride, int in, float[] xq, int xo, float[] out, int oo, int outStride, boolean add) {
        int b0 = wo;
        FloatVector a00 = FloatVector.zero(FS);
        FloatVector a10 = FloatVector.zero(FS);
        int full = in - in % L;
        int p = xo;
        int k = 0;
        for (; k < full; k += L, p += 2 * L) {
            FloatVector v0 = ld.floats(w, b0 + k * 4);
            FloatVector y0 = FloatVector.fromArray(FS, xq, p + 0 * L);
            a00 = v0.fma(y0, a00);
            FloatVector y1 = FloatVector.fromArray(FS, xq, p + 1 * L);
            a10 = v0.fma(y1, a10);
        }
        float s00 = a00.reduceLanes(VectorOperators.ADD);
        float s10 = a10.reduceLanes(VectorOperators.ADD);
        if (k < in) {
            int tail = in - full;
            for (int t = 0; t < tail; t++) {
                float w0 = ld.f32(w, b0 + (k + t) * 4);
                float y0 = xq[p + 0 * tail + t];
                s00 += w0 * y0;
                float y1 = xq[p + 1 * tail + t];
                s10 += w0 * y1;
            }
        }
        if (add) {
            int o0 = oo;
            out[o0 + 0] += s00;
            int o1 = oo + 1 * outStride;
            out[o1 + 0] += s10;
        } else {
            int o0 = oo;
            out[o0 + 0] = s00;
            int o1 = oo + 1 * outStride;
            out[o1 + 0] = s10;
        }
    }

    /** Rows [0, 1) of the panel at {@code xo} times W rows [j, j + 4) at byte {@code wo}. */
    static void f32K1x4(WeightLoads ld, Object w, int wo, int rowStride, int in, float[] xq, int xo, float[] out, int oo, int outStride, boolean add) {
        int b0 = wo;
        int b1 = wo + 1 * rowStride;
        int b2 = wo + 2 * rowStride;
        int b3 = wo + 3 * rowStride;
        FloatVector a00 = FloatVector.zero(FS); FloatVector a01 = FloatVector.zero(FS); FloatVector a02 = FloatVector.zero(FS); FloatVector a03 = FloatVector.zero(FS);
        int full = in - in % L;
        int p = xo;
        int k = 0;
        for (; k < full; k += L, p += 1 * L) {
            FloatVector v0 = ld.floats(w, b0 + k * 4);
            FloatVector v1 = ld.floats(w, b1 + k * 4);
            FloatVector v2 = ld.floats(w, b2 + k * 4);
            FloatVector v3 = ld.floats(w, b3 + k * 4);
            FloatVector y0 = FloatVector.fromArray(FS, xq, p + 0 * L);
            a00 = v0.fma(y0, a00); a01 = v1.fma(y0, a01); a02 = v2.fma(y0, a02); a03 = v3.fma(y0, a03);
        }
        float s00 = a00.reduceLanes(VectorOperators.ADD);
        float s01 = a01.reduceLanes(VectorOperators.ADD);
        float s02 = a02.reduceLanes(VectorOperators.ADD);
        float s03 = a03.reduceLanes(VectorOperators.ADD);
        if (k < in) {
            int tail = in - full;
            for (int t = 0; t < tail; t++) {
                float w0 = ld.f32(w, b0 + (k + t) * 4);
                float w1 = ld.f32(w, b1 + (k + t) * 4);
                float w2 = ld.f32(w, b2 + (k + t) * 4);
                float w3 = ld.f32(w, b3 + (k + t) * 4);
                float y0 = xq[p + 0 * tail + t];
                s00 += w0 * y0; s01 += w1 * y0; s02 += w2 * y0; s03 += w3 * y0;
            }
        }
        if (add) {
            int o0 = oo;
            out[o0 + 0] += s00; out[o0 + 1] += s01; out[o0 + 2] += s02; out[o0 + 3] += s03;
        } else {
            int o0 = oo;
            out[o0 + 0] = s00; out[o0 + 1] = s01; out[o0 + 2] = s02; out[o0 + 3] = s03;
        }
    }

    /** Rows [0, 1) of the panel at {@code xo} times W rows [j, j + 1) at byte {@code wo}. */
    static void f32K1x1(WeightLoads ld, Object w, int wo, int rowStride, int in, float[] xq, int xo, float[] out, int oo, int outStride, boolean add) {
        int b0 = wo;
        FloatVector a00 = FloatVector.zero(FS);
        int full = in - in % L;
        int p = xo;
        int k = 0;
        for (; k < full; k += L, p += 1 * L) {
            FloatVector v0 = ld.floats(w, b0 + k * 4);
            FloatVector y0 = FloatVector.fromArray(FS, xq, p + 0 * L);
            a00 = v0.fma(y0, a00);
        }
        float s00 = a00.reduceLanes(VectorOperators.ADD);
        if (k < in) {
            int tail = in - full;
            for (int t = 0; t < tail; t++) {
                float w0 = ld.f32(w, b0 + (k + t) * 4);
                float y0 = xq[p + 0 * tail + t];
                s00 += w0 * y0;
            }
        }
        if (add) {
            int o0 = oo;
            out[o0 + 0] += s00;
        } else {
            int o0 = oo;
            out[o0 + 0] = s00;
        }
    }
}
