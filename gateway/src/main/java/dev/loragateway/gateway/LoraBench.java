package dev.loragateway.gateway;

import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.adapters.LoraModule;
import dev.loragateway.adapters.ModelShape;
import dev.loragateway.batcher.ForwardPass;
import dev.loragateway.batcher.KvCache;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.batcher.StepBatch;
import dev.loragateway.kernels.CpuBackend;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.LoraSlotPool;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
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
final class LoraBench {
    private final LlamaModel model;
    private final ModelConfig cfg;
    private final int adapters;
    private final int batch;
    private final int rank;
    private final String distribution;
    private final int steps;
    private final int repeats;

    LoraBench(LlamaModel model, int adapters, int batch, int rank, String distribution, int steps, int repeats) {
        this.model = model;
        this.cfg = model.config();
        this.adapters = adapters;
        this.batch = batch;
        this.rank = rank;
        this.distribution = distribution;
        this.steps = steps;
        this.repeats = repeats;
    }

    /** Which adapter each of the B rows uses. */
    static int[] rowAdapters(String distribution, int rows, int n, SplittableRandom rnd) {
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

    void run(CpuBackend cpu) {
        SplittableRandom rnd = new SplittableRandom(11);
        ModelShape shape = cfg.shape();
        LoraSlotPool pool = new LoraSlotPool(adapters, cfg.numLayers(), shape.ins(), shape.outs());
        long t0 = System.nanoTime();
        for (int i = 0; i < adapters; i++) {
            pool.write(i, randomAdapter(shape, rank, model.embedding().dtype() == DType.BF16, rnd));
        }
        double fill = (System.nanoTime() - t0) / 1e9;
        int[] rowAdapter = rowAdapters(distribution, batch, adapters, rnd);
        long used = Arrays.stream(rowAdapter).distinct().count();
        System.out.printf("%d adapters of rank %d on all 7 projections (%d layers), %s; batch %d, %s: %d distinct adapters in the batch; "
            + "slot pool %.1f MB (%.1f MB per adapter, packed in %.2f s); %d decode steps per measurement, best of %d%n",
            adapters, rank, cfg.numLayers(), pool.isBf16(0) ? "bf16" : "float32", batch, distribution, used, pool.totalBytes() / 1e6,
            pool.totalBytes() / 1e6 / adapters, fill, steps, repeats);

        ForwardPass pass = new ForwardPass(model, cpu, pool);
        double a = 0;
        double b = 0;
        double c = 0;
        for (int rep = 0; rep < repeats; rep++) { // interleaved, so drift hits all three alike
            a = Math.max(a, mixed(pass, rowAdapter, false));
            b = Math.max(b, mixed(pass, rowAdapter, true));
            c = Math.max(c, perAdapter(pass, rowAdapter));
        }
        double flop = 2.0 * model.bytesPerToken() / model.embedding().dtype().bytes() * batch; // per step
        System.out.println();
        System.out.println("| decode, batch " + batch + " | tokens/s |");
        System.out.println("|---|---|");
        System.out.printf("| (a) base model alone | %.1f |%n", a);
        System.out.printf("| (b) %d adapters mixed in one batch (%s) | %.1f |%n", used, distribution, b);
        System.out.printf("| (c) per-adapter batches (one adapter per step) | %.1f |%n", c);
        System.out.printf("| ratio b/a | %.3f |%n", b / a);
        System.out.printf("| ratio b/c | %.2f |%n", b / c);
        System.out.printf("| slot pool bytes | %.1f MB |%n", pool.totalBytes() / 1e6);
        System.out.printf("| base step time, batch %d | %.1f ms (~%.0f GFLOP/s of weights x rows) |%n", batch,
            1000.0 * batch / a, flop * a / batch / 1e9);
    }

    /** Tokens/s of {@code steps} decode steps with all rows in one batch, with or without their adapters. */
    private double mixed(ForwardPass pass, int[] rowAdapter, boolean withAdapters) {
        Integer[] order = new Integer[batch];
        for (int i = 0; i < batch; i++) {
            order[i] = i;
        }
        Arrays.sort(order, Comparator.comparingInt(i -> rowAdapter[i]));
        int[] slots = new int[batch];
        for (int i = 0; i < batch; i++) {
            slots[i] = withAdapters ? rowAdapter[order[i]] : -1;
        }
        return decode(pass, List.of(slots), steps);
    }

    /** Tokens/s when each step holds the rows of only one adapter (one step per adapter per token). */
    private double perAdapter(ForwardPass pass, int[] rowAdapter) {
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
        return decode(pass, groups, steps);
    }

    /**
     * Prefills 4 tokens for each row, then times {@code n} rounds; a round runs one decode step per
     * group (each group's rows use the group's slots). Returns generated tokens per second.
     */
    private double decode(ForwardPass pass, List<int[]> groups, int n) {
        int vocab = cfg.vocabSize();
        List<KvCache[]> caches = new ArrayList<>();
        StepBatch sb = new StepBatch();
        int rows = 0;
        int maxRows = 0;
        for (int[] g : groups) {
            maxRows = Math.max(maxRows, g.length);
        }
        float[] logits = new float[maxRows * vocab];
        SplittableRandom rnd = new SplittableRandom(3);
        for (int[] g : groups) {
            KvCache[] cs = new KvCache[g.length];
            sb.clear();
            for (int i = 0; i < g.length; i++) {
                cs[i] = new KvCache(cfg, n + 8);
                for (int p = 0; p < 4; p++) {
                    sb.add(cs[i], rnd.nextInt(vocab), p == 3, g[i]);
                }
            }
            pass.step(sb, logits);
            caches.add(cs);
            rows += g.length;
        }
        int warm = 1;
        long t0 = 0;
        for (int round = 0; round < n + warm; round++) {
            if (round == warm) {
                t0 = System.nanoTime();
            }
            for (int gi = 0; gi < groups.size(); gi++) {
                int[] g = groups.get(gi);
                KvCache[] cs = caches.get(gi);
                sb.clear();
                for (int i = 0; i < g.length; i++) {
                    sb.add(cs[i], (round * 31 + i * 7) % vocab, true, g[i]);
                }
                pass.step(sb, logits);
            }
        }
        return (double) rows * n / ((System.nanoTime() - t0) / 1e9);
    }
}
