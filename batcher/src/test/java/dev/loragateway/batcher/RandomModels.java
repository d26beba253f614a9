package dev.loragateway.batcher;

import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.adapters.LoraModule;
import dev.loragateway.adapters.ModelShape;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.Tensor;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/** Random Llama models and LoRA adapters for tests, and the merged-weights twin of an adapter. */
public final class RandomModels {
    private RandomModels() {
    }

    /** A small llama config with GQA and odd sizes. */
    public static ModelConfig config(int hidden, int inter, int layers, int heads, int kvHeads, int vocab) {
        return new ModelConfig("llama", hidden, inter, layers, heads, kvHeads, hidden / heads, vocab, 1e-5, 10000.0,
            null, 512, false, false, false, 0, 1, new int[] {2});
    }

    public static float[] gaussian(Random rnd, int n, double std) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            float v;
            do {
                v = (float) (std * rnd.nextGaussian());
            } while (v == 0f);
            a[i] = v;
        }
        return a;
    }

    /** HF-named float weights of a random model (values rounded to {@code dtype} when it is 16-bit). */
    public static Map<String, float[]> weights(ModelConfig c, Random rnd, DType dtype) {
        Map<String, float[]> w = new HashMap<>();
        int h = c.hiddenSize();
        w.put("model.embed_tokens.weight", gaussian(rnd, c.vocabSize() * h, 1.0));
        w.put("lm_head.weight", gaussian(rnd, c.vocabSize() * h, 1 / Math.sqrt(h)));
        w.put("model.norm.weight", norm(rnd, h));
        ModelShape s = c.shape();
        for (int l = 0; l < c.numLayers(); l++) {
            String p = "model.layers." + l + ".";
            w.put(p + "input_layernorm.weight", norm(rnd, h));
            w.put(p + "post_attention_layernorm.weight", norm(rnd, h));
            for (LoraModule m : LoraModule.values()) {
                w.put(p + m.block() + "." + m.peftName() + ".weight", gaussian(rnd, s.out(m) * s.in(m), 1 / Math.sqrt(s.in(m))));
            }
        }
        if (dtype != DType.F32) {
            for (float[] a : w.values()) {
                for (int i = 0; i < a.length; i++) {
                    a[i] = dtype == DType.BF16 ? DType.bf16ToFloat(DType.floatToBf16(a[i])) : DType.f16ToFloat(DType.floatToF16(a[i]));
                }
            }
        }
        return w;
    }

    private static float[] norm(Random rnd, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) (1 + 0.2 * rnd.nextGaussian());
        }
        return a;
    }

    /** Tensors of {@code weights} in {@code dtype}; norms stay F32 as checkpoints usually keep them. */
    public static LlamaModel model(ModelConfig c, Map<String, float[]> weights, DType dtype) {
        Map<String, Tensor> t = new HashMap<>();
        ModelShape s = c.shape();
        for (var e : weights.entrySet()) {
            String n = e.getKey();
            float[] v = e.getValue();
            if (n.endsWith("norm.weight")) {
                t.put(n, Tensor.of(n, DType.F32, v, v.length));
            } else if (n.startsWith("model.embed_tokens") || n.startsWith("lm_head")) {
                t.put(n, Tensor.of(n, dtype, v, c.vocabSize(), c.hiddenSize()));
            } else {
                LoraModule m = LoraModule.ofPeftName(n.substring(n.lastIndexOf('.', n.length() - 8) + 1, n.length() - 7)).orElseThrow();
                t.put(n, Tensor.of(n, dtype, v, s.out(m), s.in(m)));
            }
        }
        return LlamaModel.fromWeights(c, t);
    }

    /**
     * A random adapter of config rank {@code rank} on {@code targets}; every third layer is skipped
     * (as {@code layers_to_transform} would) when {@code skipLayers}, and modules alternate between
     * rank and rank/2 (as {@code rank_pattern} would) when {@code pattern}.
     */
    public static LoraAdapter adapter(String name, ModelShape s, Random rnd, int rank, double alpha, List<LoraModule> targets,
                               boolean skipLayers, boolean pattern, boolean rslora) {
        LoraAdapter.Part[][] parts = new LoraAdapter.Part[s.layers()][LoraModule.COUNT];
        for (int l = 0; l < s.layers(); l++) {
            if (skipLayers && l % 3 == 1) {
                continue;
            }
            for (LoraModule m : targets) {
                int r = pattern && m.ordinal() % 2 == 1 ? Math.max(1, rank / 2) : rank;
                float scaling = (float) (rslora ? alpha / Math.sqrt(r) : alpha / r);
                // B·A·x about a third of W·x: A ~ 1/sqrt(in), B ~ 0.35/(scaling·sqrt(r))
                float[] a = gaussian(rnd, r * s.in(m), 1 / Math.sqrt(s.in(m)));
                float[] b = gaussian(rnd, s.out(m) * r, 0.35 / (scaling * Math.sqrt(r)));
                parts[l][m.ordinal()] = new LoraAdapter.Part(r, scaling, a, b);
            }
        }
        return new LoraAdapter(name, rank, alpha, targets, 0, parts);
    }

    /** {@code W + scaling·B·A} for every adapted projection, computed in double, rounded once to float. */
    public static Map<String, float[]> merged(ModelConfig c, Map<String, float[]> base, LoraAdapter a) {
        Map<String, float[]> w = new HashMap<>(base);
        ModelShape s = c.shape();
        for (int l = 0; l < c.numLayers(); l++) {
            for (LoraModule m : LoraModule.values()) {
                LoraAdapter.Part p = a.part(l, m);
                if (p == null) {
                    continue;
                }
                String n = "model.layers." + l + "." + m.block() + "." + m.peftName() + ".weight";
                float[] orig = base.get(n);
                float[] out = new float[orig.length];
                int in = s.in(m);
                int r = p.rank();
                for (int o = 0; o < s.out(m); o++) {
                    for (int j = 0; j < in; j++) {
                        double d = 0;
                        for (int k = 0; k < r; k++) {
                            d += (double) p.b()[o * r + k] * p.a()[k * in + j];
                        }
                        out[o * in + j] = (float) (orig[o * in + j] + p.scaling() * d);
                    }
                }
                w.put(n, out);
            }
        }
        return w;
    }

    /** Rounds every A and B value of {@code a} to bfloat16, in place (never to zero). */
    public static void roundToBf16(LoraAdapter a) {
        for (int l = 0; l < a.layers(); l++) {
            for (LoraModule m : LoraModule.values()) {
                LoraAdapter.Part p = a.part(l, m);
                if (p != null) {
                    for (float[] v : List.of(p.a(), p.b())) {
                        for (int i = 0; i < v.length; i++) {
                            float f = DType.bf16ToFloat(DType.floatToBf16(v[i]));
                            v[i] = f == 0f ? 0x1p-20f : f;
                        }
                    }
                }
            }
        }
    }

    /** Nine adapters of mixed ranks, targets, layer subsets, rank patterns and rsLoRA. */
    public static List<LoraAdapter> mixedAdapters(ModelShape s, Random rnd) {
        List<LoraModule> all = List.of(LoraModule.values());
        List<LoraAdapter> list = new ArrayList<>();
        list.add(adapter("r4-qv", s, rnd, 4, 8, List.of(LoraModule.Q_PROJ, LoraModule.V_PROJ), false, false, false));
        list.add(adapter("r8-all", s, rnd, 8, 16, all, false, false, false));
        list.add(adapter("r16-attn", s, rnd, 16, 32, List.of(LoraModule.Q_PROJ, LoraModule.K_PROJ, LoraModule.V_PROJ, LoraModule.O_PROJ), false, false, false));
        list.add(adapter("r8-mlp", s, rnd, 8, 16, List.of(LoraModule.GATE_PROJ, LoraModule.UP_PROJ, LoraModule.DOWN_PROJ), false, false, false));
        list.add(adapter("r2-o", s, rnd, 2, 4, List.of(LoraModule.O_PROJ), false, false, false));
        list.add(adapter("r32-all-rslora", s, rnd, 32, 16, all, false, false, true));
        list.add(adapter("r12-pattern", s, rnd, 12, 24, all, false, true, false));
        list.add(adapter("r6-layers", s, rnd, 6, 12, all, true, false, false));
        list.add(adapter("r3-down", s, rnd, 3, 9, List.of(LoraModule.DOWN_PROJ, LoraModule.K_PROJ), false, false, false));
        return list;
    }
}
