package dev.loragateway.batcher;

import dev.loragateway.kernels.cpu.Rope;
import dev.loragateway.kernels.SafeTensors;
import dev.loragateway.kernels.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;

/**
 * The weights of a Llama-family model, looked up by their Hugging Face names and kept as the
 * memory-mapped tensors of the safetensors files (16-bit weights stay 16-bit, nothing is copied
 * into the heap but the small norm and bias vectors).
 */
public final class LlamaModel {
    /** One decoder layer. Projection weights are {@code (out, in)}; biases may be null. */
    public record Layer(
        float[] inputNorm,        // (hidden)
        Tensor q, float[] qBias,  // (heads·headDim, hidden)
        Tensor k, float[] kBias,  // (kvHeads·headDim, hidden)
        Tensor v, float[] vBias,  // (kvHeads·headDim, hidden)
        Tensor o, float[] oBias,  // (hidden, heads·headDim)
        float[] postNorm,         // (hidden)
        Tensor gate,              // (intermediate, hidden)
        Tensor up,                // (intermediate, hidden)
        Tensor down) {            // (hidden, intermediate)
    }

    private final ModelConfig config;
    private final Tensor embed;     // (vocab, hidden)
    private final Layer[] layers;
    private final float[] finalNorm; // (hidden)
    private final Tensor lmHead;    // (vocab, hidden); the embedding when tied
    private final Rope rope;

    LlamaModel(ModelConfig config, Tensor embed, Layer[] layers, float[] finalNorm, Tensor lmHead) {
        this.config = config;
        this.embed = embed;
        this.layers = layers;
        this.finalNorm = finalNorm;
        this.lmHead = lmHead;
        this.rope = new Rope(config.headDim(), config.ropeTheta(), config.ropeScaling());
    }

    /** Loads {@code config.json} and the safetensors weights (single file or sharded) of a model directory. */
    public static LlamaModel load(Path dir) throws IOException {
        ModelConfig cfg = ModelConfig.load(dir);
        Map<String, Tensor> w = SafeTensors.openDirectory(dir);
        return fromWeights(cfg, w);
    }

    /** Binds tensors by their Hugging Face names, checking every shape against the config. */
    public static LlamaModel fromWeights(ModelConfig cfg, Map<String, Tensor> w) {
        int h = cfg.hiddenSize();
        int inter = cfg.intermediateSize();
        Tensor embed = need(w, "model.embed_tokens.weight", cfg.vocabSize(), h);
        Layer[] layers = new Layer[cfg.numLayers()];
        for (int i = 0; i < layers.length; i++) {
            String p = "model.layers." + i + ".";
            layers[i] = new Layer(
                vector(w, p + "input_layernorm.weight", h),
                need(w, p + "self_attn.q_proj.weight", cfg.qDim(), h),
                cfg.qkvBias() ? vector(w, p + "self_attn.q_proj.bias", cfg.qDim()) : null,
                need(w, p + "self_attn.k_proj.weight", cfg.kvDim(), h),
                cfg.qkvBias() ? vector(w, p + "self_attn.k_proj.bias", cfg.kvDim()) : null,
                need(w, p + "self_attn.v_proj.weight", cfg.kvDim(), h),
                cfg.qkvBias() ? vector(w, p + "self_attn.v_proj.bias", cfg.kvDim()) : null,
                need(w, p + "self_attn.o_proj.weight", h, cfg.qDim()),
                cfg.outputBias() ? vector(w, p + "self_attn.o_proj.bias", h) : null,
                vector(w, p + "post_attention_layernorm.weight", h),
                need(w, p + "mlp.gate_proj.weight", inter, h),
                need(w, p + "mlp.up_proj.weight", inter, h),
                need(w, p + "mlp.down_proj.weight", h, inter));
        }
        float[] norm = vector(w, "model.norm.weight", h);
        Tensor head = w.get("lm_head.weight");
        if (head == null) {
            if (!cfg.tieWordEmbeddings()) {
                throw new ModelFormatException("lm_head.weight is missing and tie_word_embeddings is false");
            }
            head = embed;
        } else {
            head.expectShape(cfg.vocabSize(), h);
        }
        return new LlamaModel(cfg, embed, layers, norm, head);
    }

    private static Tensor need(Map<String, Tensor> w, String name, int rows, int cols) {
        Tensor t = w.get(name);
        if (t == null) {
            throw new ModelFormatException("weight " + name + " is missing");
        }
        try {
            return t.expectShape(rows, cols);
        } catch (IllegalArgumentException e) {
            throw new ModelFormatException(e.getMessage());
        }
    }

    private static float[] vector(Map<String, Tensor> w, String name, int n) {
        Tensor t = w.get(name);
        if (t == null) {
            throw new ModelFormatException("weight " + name + " is missing");
        }
        if (t.rank() != 1 || t.dim(0) != n) {
            throw new ModelFormatException("tensor " + name + " has shape " + java.util.Arrays.toString(t.shape()) + ", expected [" + n + "]");
        }
        return t.toFloats();
    }

    public ModelConfig config() {
        return config;
    }

    public Tensor embedding() {
        return embed;
    }

    public Layer layer(int i) {
        return layers[i];
    }

    public float[] finalNorm() {
        return finalNorm;
    }

    public Tensor lmHead() {
        return lmHead;
    }

    public Rope rope() {
        return rope;
    }

    /** Weight bytes one decode step reads: every projection, the LM head, one embedding row. */
    public long bytesPerToken() {
        long b = 0;
        for (Layer l : layers) {
            b += l.q().bytes() + l.k().bytes() + l.v().bytes() + l.o().bytes()
                + l.gate().bytes() + l.up().bytes() + l.down().bytes();
        }
        return b + lmHead.bytes() + (long) config.hiddenSize() * embed.dtype().bytes();
    }

    /** Bytes of all weights as stored. */
    public long weightBytes() {
        long b = embed.bytes();
        for (Layer l : layers) {
            b += l.q().bytes() + l.k().bytes() + l.v().bytes() + l.o().bytes()
                + l.gate().bytes() + l.up().bytes() + l.down().bytes();
        }
        return lmHead == embed ? b : b + lmHead.bytes();
    }
}
