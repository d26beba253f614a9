package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Fixtures;

import dev.loragateway.kernels.DType;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * SGMV and BGMV against a double-precision loop, punica-style: batch sizes × adapter popularity ×
 * ranks (and mixed ranks in one batch), on odd shapes, with base-model rows (slot −1) mixed in
 * where the popularity says so.
 */
class LoraKernelTest {
    static final int LAYERS = 2;
    static final int[] INS = {37, 29, 100};
    static final int[] OUTS = {29, 53, 37};
    static final int[] BATCH = {1, 2, 3, 7, 16, 32, 64, 133};
    static final String[] POPULARITY = {"identical", "distinct", "uniform", "zipf", "skewed"};
    static final int[] RANKS = {4, 8, 16, 64, 0}; // 0: mixed ranks

    static CpuBackend backend;
    /** The native kernels where available (bf16 adapters only; a batch with a float32 adapter falls back to Java), else null. */
    static CpuBackend nativeBackend;

    @BeforeAll
    static void start() {
        backend = new CpuBackend(2, CpuKernelForm.selected()); // the Vector API kernels
        nativeBackend = NativeCpu.available() ? new CpuBackend(2, CpuKernelForm.selected(), true) : null;
    }

    @AfterAll
    static void stop() {
        backend.close();
        if (nativeBackend != null) {
            nativeBackend.close();
        }
    }

    static Stream<Arguments> matrix() {
        List<Arguments> out = new ArrayList<>();
        for (int b : BATCH) {
            for (String p : POPULARITY) {
                for (int r : RANKS) {
                    out.add(Arguments.of(b, p, r));
                }
            }
        }
        return out.stream();
    }

    /** A random adapter as the pool reads it; module 2 is left out by every third adapter. */
    record Adapter(int[][] rank, float[][] scale, float[][][] a, float[][][] b) implements LoraSlotPool.Source {
        static Adapter random(Random rnd, int rank, int index) {
            int[][] rk = new int[LAYERS][INS.length];
            float[][] sc = new float[LAYERS][INS.length];
            float[][][] a = new float[LAYERS][INS.length][];
            float[][][] b = new float[LAYERS][INS.length][];
            for (int l = 0; l < LAYERS; l++) {
                for (int m = 0; m < INS.length; m++) {
                    int r = rank;
                    if (rank == 0) { // mixed: ranks differ per adapter and per module
                        r = new int[] {4, 8, 16, 64, 5}[(index + m + l) % 5];
                    }
                    if (m == 2 && index % 3 == 2) {
                        r = 0;
                    }
                    rk[l][m] = r;
                    sc[l][m] = (float) (0.5 + rnd.nextDouble());
                    a[l][m] = Fixtures.gaussian(rnd, r * INS[m], 0.3, 0.01);
                    b[l][m] = Fixtures.gaussian(rnd, OUTS[m] * r, 0.3, -0.01);
                    if (index % 2 == 1) { // odd adapters are exactly bf16: the pool keeps them as bf16
                        toBf16(a[l][m]);
                        toBf16(b[l][m]);
                    }
                }
            }
            return new Adapter(rk, sc, a, b);
        }

        /** A copy with every A and B value rounded to bf16 (so the pool holds it as bf16). */
        Adapter roundedToBf16() {
            float[][][] a2 = new float[LAYERS][INS.length][];
            float[][][] b2 = new float[LAYERS][INS.length][];
            for (int l = 0; l < LAYERS; l++) {
                for (int m = 0; m < INS.length; m++) {
                    a2[l][m] = a[l][m].clone();
                    b2[l][m] = b[l][m].clone();
                    toBf16(a2[l][m]);
                    toBf16(b2[l][m]);
                }
            }
            return new Adapter(rank, scale, a2, b2);
        }

        static void toBf16(float[] v) {
            for (int i = 0; i < v.length; i++) {
                float f = DType.bf16ToFloat(DType.floatToBf16(v[i]));
                v[i] = f == 0f ? 0x1p-20f : f;
            }
        }

        @Override public int rank(int layer, int module) {
            return rank[layer][module];
        }

        @Override public float scaling(int layer, int module) {
            return scale[layer][module];
        }

        @Override public float[] a(int layer, int module) {
            return a[layer][module];
        }

        @Override public float[] b(int layer, int module) {
            return b[layer][module];
        }
    }

    /** Slot per row for a popularity; the count of distinct adapters is at most {@code rows}. */
    static int[] rowSlots(String popularity, int rows, Random rnd) {
        int[] s = new int[rows];
        switch (popularity) {
            case "identical" -> Arrays.fill(s, 0);
            case "distinct" -> {
                for (int i = 0; i < rows; i++) {
                    s[i] = i;
                }
            }
            case "uniform" -> {
                int n = (int) Math.ceil(Math.sqrt(rows));
                for (int i = 0; i < rows; i++) {
                    s[i] = rnd.nextInt(n);
                }
            }
            case "zipf" -> { // P(k) ∝ 1/(k+1)^1.5 over `rows` adapters
                double[] cdf = new double[rows];
                double sum = 0;
                for (int k = 0; k < rows; k++) {
                    sum += 1 / Math.pow(k + 1, 1.5);
                    cdf[k] = sum;
                }
                for (int i = 0; i < rows; i++) {
                    double u = rnd.nextDouble() * sum;
                    int k = 0;
                    while (cdf[k] < u) {
                        k++;
                    }
                    s[i] = k;
                }
            }
            default -> { // skewed: half the rows on one adapter, a quarter base model, the rest distinct
                for (int i = 0; i < rows; i++) {
                    double u = rnd.nextDouble();
                    s[i] = u < 0.5 ? 0 : u < 0.75 ? -1 : i;
                }
            }
        }
        return s;
    }

    /** y0 + Σ over rows of scaling · B·(A·x), in double. */
    static double[] reference(Adapter[] bySlot, int[] slot, int layer, int m, float[] x, float[] y0) {
        int in = INS[m];
        int out = OUTS[m];
        int rows = slot.length;
        double[] y = new double[rows * out];
        for (int i = 0; i < rows; i++) {
            for (int o = 0; o < out; o++) {
                y[i * out + o] = y0[i * out + o];
            }
            if (slot[i] < 0) {
                continue;
            }
            Adapter ad = bySlot[slot[i]];
            int r = ad.rank(layer, m);
            for (int k = 0; k < r; k++) {
                double t = 0;
                for (int j = 0; j < in; j++) {
                    t += (double) ad.a(layer, m)[k * in + j] * x[i * in + j];
                }
                t *= ad.scaling(layer, m);
                for (int o = 0; o < out; o++) {
                    y[i * out + o] += t * ad.b(layer, m)[o * r + k];
                }
            }
        }
        return y;
    }

    @ParameterizedTest(name = "batch {0}, {1}, rank {2} (0 = mixed)")
    @MethodSource("matrix")
    void sgmvAndBgmvMatchDoubleReference(int rows, String popularity, int rank) {
        Random rnd = new Random(31L * rows + popularity.hashCode() + rank);
        int[] slot = rowSlots(popularity, rows, rnd);
        int slots = Math.max(1, Arrays.stream(slot).max().orElse(0) + 1);
        LoraSlotPool pool = new LoraSlotPool(slots, LAYERS, INS, OUTS);
        Adapter[] bySlot = new Adapter[slots];
        for (int s = 0; s < slots; s++) {
            bySlot[s] = Adapter.random(rnd, rank, s);
            pool.write(s, bySlot[s]);
        }
        // the same adapters rounded to bf16, all held as bf16 (the native LoRA kernel's input)
        LoraSlotPool pool16 = new LoraSlotPool(slots, LAYERS, INS, OUTS);
        Adapter[] bySlot16 = new Adapter[slots];
        for (int s = 0; s < slots; s++) {
            bySlot16[s] = bySlot[s].roundedToBf16();
            pool16.write(s, bySlot16[s]);
            assertTrue(pool16.isBf16(s), "slot " + s + " of the bf16 pool");
        }
        int[] sorted = slot.clone();
        Arrays.sort(sorted); // the engine's order: rows of one adapter contiguous

        for (int layer = 0; layer < LAYERS; layer++) {
            for (int m = 0; m < INS.length; m++) {
                int in = INS[m];
                int out = OUTS[m];
                float[] x = Fixtures.gaussian(rnd, rows * in, 1.0, 0.05);
                float[] y0 = Fixtures.gaussian(rnd, rows * out, 1.0, 0.05);
                String where = "batch " + rows + " " + popularity + " rank " + rank + " layer " + layer + " module " + m;

                for (int[] order : new int[][] {slot, sorted}) {
                    double[] ref = reference(bySlot, order, layer, m, x, y0);
                    // the backend's choice (BGMV when all segments are single rows, else SGMV), split over 2 threads
                    float[] y = y0.clone();
                    backend.lora(pool, LoraBatch.of(order, rows), layer, m, x, in, y, out);
                    check(ref, y, where + " backend");
                    if (nativeBackend != null) {
                        // float32 and bf16 adapters mixed: the native backend (Java for batches with a float32 adapter)
                        y = y0.clone();
                        nativeBackend.lora(pool, LoraBatch.of(order, rows), layer, m, x, in, y, out);
                        check(ref, y, where + " native backend, mixed pool");
                        // every adapter bf16: the native LoRA kernel
                        double[] ref16 = reference(bySlot16, order, layer, m, x, y0);
                        y = y0.clone();
                        nativeBackend.lora(pool16, LoraBatch.of(order, rows), layer, m, x, in, y, out);
                        check(ref16, y, where + " native backend, bf16 pool");
                    }

                    // BGMV directly, in two uneven row ranges
                    int ts = 64;
                    float[] t = new float[rows * ts];
                    y = y0.clone();
                    int cut = rows / 3;
                    Lora.bgmvShrink(pool, layer, m, order, 0, cut, x, in, t, ts);
                    Lora.bgmvShrink(pool, layer, m, order, cut, rows, x, in, t, ts);
                    Lora.bgmvExpand(pool, layer, m, order, cut, rows, t, ts, y, out);
                    Lora.bgmvExpand(pool, layer, m, order, 0, cut, t, ts, y, out);
                    check(ref, y, where + " bgmv");

                    // SGMV directly over all segments
                    LoraBatch batch = LoraBatch.of(order, rows);
                    y = y0.clone();
                    Lora.sgmvShrink(pool, layer, m, batch.segStarts(), batch.segSlots(), 0, batch.segments(), 0, rows, x, in, t, ts);
                    Lora.sgmvExpand(pool, layer, m, batch.segStarts(), batch.segSlots(), 0, batch.segments(), 0, rows, t, ts, y, out);
                    check(ref, y, where + " sgmv");
                }
            }
        }
    }

    private static void check(double[] ref, float[] y, String where) {
        for (int i = 0; i < ref.length; i++) {
            final int idx = i;
            Fixtures.assertWithin(ref[i], y[i], 2e-5 * (1 + Math.abs(ref[i])), () -> where + " element " + idx);
        }
    }

    @Test
    void segmentsOfWorkedExample() {
        LoraBatch b = LoraBatch.of(new int[] {3, 3, 0, 7}, 4);
        assertEquals(3, b.segments());
        assertEquals(List.of(0, 2, 3, 4), List.of(b.segStart(0), b.segStart(1), b.segStart(2), b.segStart(3)));
        assertEquals(List.of(3, 0, 7), List.of(b.segSlot(0), b.segSlot(1), b.segSlot(2)));
        assertEquals(false, b.allSingleRows());
        assertEquals(false, LoraBatch.none(5).anyAdapter());
    }

    @Test
    void poolPacksBytesAndRejectsWrongShapes() {
        Random rnd = new Random(5);
        LoraSlotPool pool = new LoraSlotPool(3, LAYERS, INS, OUTS);
        Adapter a = Adapter.random(rnd, 8, 0);
        long bytes = pool.write(1, a);
        long floats = 0;
        for (int l = 0; l < LAYERS; l++) {
            for (int m = 0; m < INS.length; m++) {
                floats += (long) a.rank(l, m) * (INS[m] + OUTS[m]);
            }
        }
        assertEquals(4 * floats, bytes);
        assertEquals(false, pool.isBf16(1));
        Adapter half = Adapter.random(rnd, 8, 1); // odd index: bf16-exact values
        long halfBytes = pool.write(2, half);
        assertEquals(true, pool.isBf16(2));
        long words = 0; // two bf16 values per int in whole 2L-blocks, one per int in a row's tail
        for (int l = 0; l < LAYERS; l++) {
            for (int m = 0; m < INS.length; m++) {
                words += (long) half.rank(l, m) * (Bf16Rows.words(INS[m]) + Bf16Rows.words(OUTS[m]));
            }
        }
        assertEquals(4 * words, halfBytes);
        assertTrue(halfBytes < bytes, "bf16 adapter takes " + halfBytes + " bytes, float32 " + bytes);
        assertEquals(bytes + halfBytes, pool.totalBytes());
        pool.clear(2);
        assertEquals(bytes, pool.totalBytes());
        pool.clear(1);
        assertEquals(0, pool.totalBytes());
        assertEquals(0, pool.rank(1, 0, 0));
        Adapter bad = new Adapter(a.rank(), a.scale(), a.a(), new float[][][] {
            {new float[3], a.b()[0][1], a.b()[0][2]}, a.b()[1]});
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> pool.write(0, bad));
        assertEquals(true, e.getMessage().contains("need " + OUTS[0] * 8), e.getMessage());
    }

    @Test
    void slotsReadBackAsWrittenAndCountTheirGenerations() {
        Random rnd = new Random(11);
        LoraSlotPool pool = new LoraSlotPool(2, LAYERS, INS, OUTS);
        for (int index = 0; index < 4; index++) { // even: float32 storage, odd: packed bf16
            Adapter a = Adapter.random(rnd, 0, index);
            int slot = index % 2;
            long before = pool.generation(slot);
            pool.write(slot, a);
            assertEquals(before + 1, pool.generation(slot));
            assertEquals(index % 2 == 1, pool.isBf16(slot));
            for (int l = 0; l < LAYERS; l++) {
                for (int m = 0; m < INS.length; m++) {
                    int r = a.rank(l, m);
                    float[] gotA = new float[r * INS[m] + 2];
                    float[] gotBt = new float[r * OUTS[m] + 2];
                    gotA[0] = 7f;
                    pool.copyA(slot, l, m, gotA, 1);
                    pool.copyBt(slot, l, m, gotBt, 1);
                    assertEquals(7f, gotA[0]);
                    for (int k = 0; k < r; k++) {
                        for (int j = 0; j < INS[m]; j++) {
                            assertEquals(a.a(l, m)[k * INS[m] + j], gotA[1 + k * INS[m] + j], "A " + index + "/" + l + "/" + m);
                        }
                        for (int o = 0; o < OUTS[m]; o++) {
                            assertEquals(a.b(l, m)[o * r + k], gotBt[1 + k * OUTS[m] + o], "Bt " + index + "/" + l + "/" + m);
                        }
                    }
                    assertEquals(0f, gotA[gotA.length - 1]);
                }
            }
        }
        long g = pool.generation(0);
        pool.clear(0);
        assertEquals(g + 1, pool.generation(0));
        assertEquals(0, pool.rank(0, 1, 1));
    }
}
