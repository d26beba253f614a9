package dev.loragateway.bench;

import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.adapters.LoraModule;
import dev.loragateway.adapters.ModelShape;
import dev.loragateway.batcher.ForwardPass;
import dev.loragateway.batcher.KvCache;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.batcher.StepBatch;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.cpu.LoraSlotPool;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;

/**
 * The multi-LoRA decode benchmark, three ways on one model in one run:
 * (a) the base model alone at batch B; (b) B rows over N adapters mixed in one batch (SGMV/BGMV);
 * (c) the per-adapter baseline, where a step only ever holds one adapter's rows, as in a system
 * without a mixed-adapter kernel. Reports tokens/s for each and the ratios b/a and b/c.
 */
public record LoraBench(LlamaModel model, int adapters, int batch, int rank, String distribution, int steps, int repeats) {
    private ModelConfig cfg() {
        return model.config();
    }

    /** Which adapter each of the B rows uses. */
    public static int[] rowAdapters(String distribution, int rows, int n, SplittableRandom rnd) {
        int[] a = new int[rows];
        switch (distribution) {
            case "identical" -> Arrays.fill(a, 0);
            case "distinct" -> {
                for (int i = 0; i < rows; i++) {
                    a[i] = i % n;
                }
            }
            case "uniform" -> {
                for (int i = 0; i < rows; i++) {
                    a[i] = rnd.nextInt(n);
                }
            }
            case "zipf" -> { // P(k) ∝ 1/(k+1)^1.5
                double[] cdf = new double[n];
                double sum = 0;
                for (int k = 0; k < n; k++) {
                    sum += 1 / Math.pow(k + 1, 1.5);
                    cdf[k] = sum;
                }
                for (int i = 0; i < rows; i++) {
                    double u = rnd.nextDouble() * sum;
                    int k = 0;
                    while (k < n - 1 && cdf[k] < u) {
                        k++;
                    }
                    a[i] = k;
                }
            }
            default -> throw new IllegalArgumentException("--distribution must be distinct, uniform, zipf or identical, got " + distribution);
        }
        return a;
    }

    /**
     * A random rank-r adapter on all seven projections of every layer; with {@code bf16} its values
     * are bfloat16 (as PEFT saves an adapter trained on a bf16 model), which the slot pool keeps as bf16.
     */
    static LoraAdapter randomAdapter(ModelShape s, int r, boolean bf16, SplittableRandom rnd) {
        LoraAdapter.Part[][] parts = new LoraAdapter.Part[s.layers()][LoraModule.COUNT];
        float scaling = 2f;
        for (int l = 0; l < s.layers(); l++) {
            for (LoraModule m : LoraModule.values()) {
                float[] a = new float[r * s.in(m)];
                float[] b = new float[s.out(m) * r];
                fill(a, rnd, 1 / Math.sqrt(s.in(m)), bf16);
                fill(b, rnd, 0.1 / (scaling * Math.sqrt(r)), bf16);
                parts[l][m.ordinal()] = new LoraAdapter.Part(r, scaling, a, b);
            }
        }
        return new LoraAdapter("bench", r, 2.0 * r, List.of(LoraModule.values()), 0, parts);
    }

    private static void fill(float[] a, SplittableRandom rnd, double std, boolean bf16) {
        for (int i = 0; i < a.length; i++) {
            float v = (float) ((rnd.nextDouble() * 2 - 1) * std * 1.7320508);
            a[i] = bf16 ? DType.bf16ToFloat(DType.floatToBf16(v)) : v;
        }
    }

    public void run(CpuBackend cpu) {
        SplittableRandom rnd = new SplittableRandom(11);
        ModelShape shape = cfg().shape();
        LoraSlotPool pool = new LoraSlotPool(adapters, cfg().numLayers(), shape.ins(), shape.outs());
        long t0 = System.nanoTime();
        for (int i = 0; i < adapters; i++) {
            pool.write(i, randomAdapter(shape, rank, model.embedding().dtype() == DType.BF16, rnd));
        }
        double fill = (System.nanoTime() - t0) / 1e9;
        int[] rowAdapter = rowAdapters(distribution, batch, adapters, rnd);
        long used = Arrays.stream(rowAdapter).distinct().count();
        System.out.printf("%d adapters of rank %d on all 7 projections (%d layers), %s; batch %d, %s: %d distinct adapters in the batch; "
            + "slot pool %.1f MB (%.1f MB per adapter, packed in %.2f s); %d decode steps per round, %d rounds; a, b and c step in lockstep; medians%n",
            adapters, rank, cfg().numLayers(), pool.isBf16(0) ? "bf16" : "float32", batch, distribution, used, pool.totalBytes() / 1e6,
            pool.totalBytes() / 1e6 / adapters, fill, steps, repeats);

        ForwardPass pass = new ForwardPass(model, cpu, pool);
        Config base = new Config(pass, List.of(slotsInOrder(rowAdapter, false)));
        Config mixed = new Config(pass, List.of(slotsInOrder(rowAdapter, true)));
        Config perAdapter = new Config(pass, groups(rowAdapter));
        double[] ba = new double[repeats];
        double[] bc = new double[repeats];
        long[] na = new long[repeats];
        long[] nb = new long[repeats];
        long[] nc = new long[repeats];
        for (int rep = -1; rep < repeats; rep++) { // round -1 warms every path up
            base.prefill();
            mixed.prefill();
            perAdapter.prefill();
            long ta = 0;
            long tb = 0;
            long tc = 0;
            // lockstep: one step of each in turn, so this VM's drifting speed hits all three alike
            for (int step = 0; step < steps; step++) {
                ta += base.round(step);
                tb += mixed.round(step);
                tc += perAdapter.round(step);
            }
            if (rep >= 0) {
                na[rep] = ta;
                nb[rep] = tb;
                nc[rep] = tc;
                ba[rep] = (double) ta / tb;
                bc[rep] = (double) tc / tb;
            }
        }
        double tokens = (double) batch * steps;
        double a = tokens / (median(na) / 1e9);
        double b = tokens / (median(nb) / 1e9);
        double c = tokens / (median(nc) / 1e9);
        double flop = 2.0 * model.bytesPerToken() / model.embedding().dtype().bytes() * batch; // per step
        System.out.println();
        System.out.println("| decode, batch " + batch + " | tokens/s |");
        System.out.println("|---|---|");
        System.out.printf("| (a) base model alone | %.1f |%n", a);
        System.out.printf("| (b) %d adapters mixed in one batch (%s) | %.1f |%n", used, distribution, b);
        System.out.printf("| (c) per-adapter batches (one adapter per step) | %.1f |%n", c);
        System.out.printf("| ratio b/a (median of per-round ratios; range) | %.3f (%.3f .. %.3f) |%n", median(ba), min(ba), max(ba));
        System.out.printf("| ratio b/c (median of per-round ratios; range) | %.2f (%.2f .. %.2f) |%n", median(bc), min(bc), max(bc));
        System.out.printf("| slot pool bytes | %.1f MB |%n", pool.totalBytes() / 1e6);
        System.out.printf("| base step time, batch %d | %.1f ms (~%.0f GFLOP/s of weights x rows) |%n", batch,
            1000.0 * batch / a, flop * a / batch / 1e9);
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    private static double min(double[] v) {
        return Arrays.stream(v).min().orElse(0);
    }

    private static double max(double[] v) {
        return Arrays.stream(v).max().orElse(0);
    }

    /** Row slots in the engine's order (grouped by adapter); all −1 for the base model. */
    private int[] slotsInOrder(int[] rowAdapter, boolean withAdapters) {
        int[] slots = rowAdapter.clone();
        Arrays.sort(slots);
        if (!withAdapters) {
            Arrays.fill(slots, -1);
        }
        return slots;
    }

    /** One group per adapter: the per-adapter baseline runs one step per group. */
    private static List<int[]> groups(int[] rowAdapter) {
        Map<Integer, Integer> counts = new TreeMap<>();
        for (int a : rowAdapter) {
            counts.merge(a, 1, Integer::sum);
        }
        List<int[]> groups = new ArrayList<>();
        for (var e : counts.entrySet()) {
            int[] g = new int[e.getValue()];
            Arrays.fill(g, e.getKey());
            groups.add(g);
        }
        return groups;
    }

    /** Sequences decoding in groups; a round is one decode step per group (one token per row). */
    private final class Config {
        final ForwardPass pass;
        final List<int[]> groups;
        final List<KvCache[]> caches = new ArrayList<>();
        final StepBatch sb = new StepBatch();
        final float[] logits;

        Config(ForwardPass pass, List<int[]> groups) {
            this.pass = pass;
            this.groups = groups;
            int maxRows = 0;
            for (int[] g : groups) {
                maxRows = Math.max(maxRows, g.length);
            }
            this.logits = new float[maxRows * cfg().vocabSize()];
        }

        /** Fresh sequences with a 4-token prompt each. */
        void prefill() {
            caches.clear();
            SplittableRandom rnd = new SplittableRandom(3);
            for (int[] g : groups) {
                KvCache[] cs = new KvCache[g.length];
                sb.clear();
                for (int i = 0; i < g.length; i++) {
                    cs[i] = new KvCache(cfg(), steps + 8);
                    for (int p = 0; p < 4; p++) {
                        sb.add(cs[i], rnd.nextInt(cfg().vocabSize()), p == 3, g[i]);
                    }
                }
                pass.step(sb, logits);
                caches.add(cs);
            }
        }

        /** Runs one round; returns its nanoseconds. */
        long round(int step) {
            long t0 = System.nanoTime();
            for (int gi = 0; gi < groups.size(); gi++) {
                int[] g = groups.get(gi);
                KvCache[] cs = caches.get(gi);
                sb.clear();
                for (int i = 0; i < g.length; i++) {
                    sb.add(cs[i], (step * 31 + i * 7) % cfg().vocabSize(), true, g[i]);
                }
                pass.step(sb, logits);
            }
            return System.nanoTime() - t0;
        }
    }

    private static double median(long[] v) {
        long[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2.0;
    }
}
