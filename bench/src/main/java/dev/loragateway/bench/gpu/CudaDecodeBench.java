package dev.loragateway.bench.gpu;

import dev.loragateway.batcher.KvCache;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.batcher.StepBatch;
import dev.loragateway.batcher.cuda.CudaForwardPass;


import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.adapters.LoraModule;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.cpu.LoraSlotPool;
import dev.loragateway.kernels.Tensor;
import dev.loragateway.kernels.cuda.CudaContext;
import dev.loragateway.kernels.cuda.CudaOps;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * The GPU bench's decode table through the real {@link CudaForwardPass}: a generated bf16 Llama of
 * the bench's shape (weights tiled from one random bf16 pattern; no files), random rank-r adapters
 * on all seven projections held as bf16 in the host slot pool and mirrored to the device, and the
 * engine's own step: one {@link StepBatch} row per sequence, the pass, the logits copied back and
 * greedy argmax on the host (as the engine samples today). {@link GpuBench#run(GpuBenchConfig,
 * dev.loragateway.kernels.cuda.CudaDevice.Probe, java.io.PrintWriter, java.io.PrintWriter)} uses it.
 */
public final class CudaDecodeBench implements GpuDecodeBench {
    /** Positions of KV room per sequence beyond the context, for the warm-up and timed steps. */
    static final int STEP_ROOM = 256;
    private static final int PATTERN = 1 << 20;

    @Override
    public String describe() {
        return "CudaForwardPass (bf16 weights, float32 KV cache and LoRA pool; logits copied back, argmax on the host)";
    }

    @Override
    public Model build(CudaContext ctx, ModelShape shape, Spec spec) {
        ModelConfig cfg = new ModelConfig("llama", shape.hidden(), shape.intermediate(), shape.layers(), shape.heads(),
            shape.kvHeads(), shape.headDim(), shape.vocab(), 1e-5, 10000.0, null, spec.contextTokens() + STEP_ROOM, false,
            false, false, 0, 1, new int[] {2});
        LlamaModel model = generate(cfg, new Random(1));
        LoraSlotPool slots = null;
        if (spec.adapters() > 0) {
            slots = new LoraSlotPool(spec.adapters(), cfg.numLayers(), cfg.shape().ins(), cfg.shape().outs());
            Random rnd = new Random(2);
            for (int i = 0; i < spec.adapters(); i++) {
                slots.write(i, adapter(cfg, rnd, spec.rank()));
            }
        }
        int blockSize = 16;
        int blocks = spec.maxBatch() * ((spec.contextTokens() + STEP_ROOM + blockSize - 1) / blockSize);
        long loraBytes = slots == null ? 0 : 2 * slots.totalBytes() + 512L * spec.adapters(); // packed bf16 on the host, float32 on the device
        CudaForwardPass pass = new CudaForwardPass(model, new CudaOps(ctx), slots, loraBytes, blocks, blockSize);
        return new Built(pass, spec);
    }

    /** Weights of {@code cfg} in bf16, every matrix tiled from one random pattern of small values. */
    static LlamaModel generate(ModelConfig cfg, Random rnd) {
        byte[] pattern = new byte[2 * PATTERN];
        ByteBuffer pb = ByteBuffer.wrap(pattern).order(ByteOrder.LITTLE_ENDIAN);
        double std = 1 / Math.sqrt(cfg.hiddenSize());
        for (int i = 0; i < PATTERN; i++) {
            pb.putShort(DType.floatToBf16((float) (std * rnd.nextGaussian())));
        }
        Map<String, Tensor> t = new HashMap<>();
        int h = cfg.hiddenSize();
        t.put("model.embed_tokens.weight", tiled("model.embed_tokens.weight", pattern, cfg.vocabSize(), h));
        t.put("lm_head.weight", tiled("lm_head.weight", pattern, cfg.vocabSize(), h));
        t.put("model.norm.weight", ones("model.norm.weight", h));
        var s = cfg.shape();
        for (int l = 0; l < cfg.numLayers(); l++) {
            String p = "model.layers." + l + ".";
            t.put(p + "input_layernorm.weight", ones(p + "input_layernorm.weight", h));
            t.put(p + "post_attention_layernorm.weight", ones(p + "post_attention_layernorm.weight", h));
            for (LoraModule m : LoraModule.values()) {
                String n = p + m.block() + "." + m.peftName() + ".weight";
                t.put(n, tiled(n, pattern, s.out(m), s.in(m)));
            }
        }
        return LlamaModel.fromWeights(cfg, t);
    }

    private static Tensor tiled(String name, byte[] pattern, int rows, int cols) {
        long bytes = 2L * rows * cols;
        if (bytes > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException(name + " of " + rows + "x" + cols + " bf16 does not fit one Java buffer");
        }
        byte[] b = new byte[(int) bytes];
        for (int at = 0; at < b.length; at += pattern.length) {
            System.arraycopy(pattern, 0, b, at, Math.min(pattern.length, b.length - at));
        }
        return new Tensor(name, DType.BF16, new int[] {rows, cols}, ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN));
    }

    private static Tensor ones(String name, int n) {
        float[] v = new float[n];
        java.util.Arrays.fill(v, 1f);
        return Tensor.of(name, DType.F32, v, n);
    }

    /** A rank-r adapter on all seven projections with bf16-exact values (the host pool packs them as bf16). */
    static LoraAdapter adapter(ModelConfig cfg, Random rnd, int rank) {
        var s = cfg.shape();
        LoraAdapter.Part[][] parts = new LoraAdapter.Part[cfg.numLayers()][LoraModule.COUNT];
        Map<Integer, float[]> shared = new HashMap<>(); // one random array per length, shared by the layers
        for (int l = 0; l < cfg.numLayers(); l++) {
            for (LoraModule m : LoraModule.values()) {
                float[] a = shared.computeIfAbsent(rank * s.in(m), n -> bf16Gaussian(rnd, n, 1 / Math.sqrt(s.in(m))));
                float[] b = shared.computeIfAbsent(-s.out(m) * rank, n -> bf16Gaussian(rnd, -n, 0.01));
                parts[l][m.ordinal()] = new LoraAdapter.Part(rank, 2f, a, b);
            }
        }
        return new LoraAdapter("bench-r" + rank, rank, 2.0 * rank, List.of(LoraModule.values()), 0, parts);
    }

    private static float[] bf16Gaussian(Random rnd, int n, double std) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            float f = DType.bf16ToFloat(DType.floatToBf16((float) (std * rnd.nextGaussian())));
            v[i] = f == 0f ? 0x1p-20f : f;
        }
        return v;
    }

    /** A built model: fresh sequences per {@link #decode} call, prefilled to the context length. */
    static final class Built implements Model {
        private final CudaForwardPass pass;
        private final Spec spec;
        private final List<KvCache> caches = new ArrayList<>();
        private final Random rnd = new Random(3);

        Built(CudaForwardPass pass, Spec spec) {
            this.pass = pass;
            this.spec = spec;
        }

        @Override
        public double decode(int[] rowAdapter, int warmupSteps, int steps) {
            int rows = rowAdapter.length;
            if (rows > spec.maxBatch()) {
                throw new IllegalArgumentException("batch " + rows + " > the built maximum " + spec.maxBatch());
            }
            if (warmupSteps + steps > STEP_ROOM) {
                throw new IllegalArgumentException((warmupSteps + steps) + " steps > the KV room of " + STEP_ROOM);
            }
            caches.forEach(KvCache::release);
            caches.clear();
            int vocab = pass.model().config().vocabSize();
            int[] next = new int[rows];
            StepBatch batch = new StepBatch();
            float[] logits = new float[rows * vocab];
            int chunk = 512;
            for (int i = 0; i < rows; i++) { // prefill, one sequence per step in chunks (untimed)
                KvCache c = new KvCache(pass.kvPool());
                caches.add(c);
                for (int done = 0; done < spec.contextTokens(); done += chunk) {
                    int n = Math.min(chunk, spec.contextTokens() - done);
                    batch.clear();
                    for (int j = 0; j < n; j++) {
                        batch.add(c, 3 + rnd.nextInt(vocab - 3), j + 1 == n && done + n == spec.contextTokens(), rowAdapter[i]);
                    }
                    pass.step(batch, logits);
                }
                next[i] = 3 + rnd.nextInt(vocab - 3);
            }
            long start = 0;
            for (int s = 0; s < warmupSteps + steps; s++) {
                if (s == warmupSteps) {
                    start = System.nanoTime();
                }
                batch.clear();
                for (int i = 0; i < rows; i++) {
                    batch.add(caches.get(i), next[i], true, rowAdapter[i]);
                }
                pass.step(batch, logits);
                for (int i = 0; i < rows; i++) {
                    int best = 0;
                    for (int c = 1; c < vocab; c++) {
                        if (logits[i * vocab + c] > logits[i * vocab + best]) {
                            best = c;
                        }
                    }
                    next[i] = best;
                }
            }
            return (System.nanoTime() - start) / 1e9;
        }

        @Override
        public void close() {
            caches.forEach(KvCache::release);
            pass.close();
        }
    }
}
