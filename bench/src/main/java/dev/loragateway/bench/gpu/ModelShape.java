package dev.loragateway.bench.gpu;

import java.util.List;

/**
 * The shape of a Llama-family decoder, enough to size its weights: what the GPU bench allocates
 * (bandwidth) and asks a {@link GpuDecodeBench} to build (decode throughput). Weights are bf16,
 * row-major {@code (out, in)}, as the kernels read them; the embedding and lm_head are untied.
 *
 * <p>Presets: {@code 1b} (Llama-3.2-1B-like: hidden 2048, intermediate 8192, 16 layers, 32 heads,
 * 8 kv heads, head_dim 64, vocab 32000; 1.10 G parameters), {@code 7b} (Llama-2-7B: hidden 4096,
 * intermediate 11008, 32 layers, 32 heads, 32 kv heads, head_dim 128, vocab 32000; 6.74 G
 * parameters) and {@code tiny} (hidden 64, 2 layers: a smoke test, e.g. on the CUDA emulator).
 * Any other shape is written {@code hidden:intermediate:layers:heads:kvHeads:headDim:vocab}.
 */
public record ModelShape(String name, int hidden, int intermediate, int layers, int heads, int kvHeads, int headDim,
                         int vocab) {
    public static final ModelShape LLAMA_1B = new ModelShape("1b", 2048, 8192, 16, 32, 8, 64, 32000);
    public static final ModelShape LLAMA_7B = new ModelShape("7b", 4096, 11008, 32, 32, 32, 128, 32000);
    public static final ModelShape TINY = new ModelShape("tiny", 64, 160, 2, 4, 2, 16, 256);

    /** One weight matrix of a layer: {@code out × in} bf16 elements. */
    public record Matrix(String name, int out, int in) {
        public long bytes() {
            return 2L * out * in;
        }
    }

    public ModelShape {
        if (hidden < 1 || intermediate < 1 || layers < 1 || heads < 1 || kvHeads < 1 || headDim < 1 || vocab < 1) {
            throw new IllegalArgumentException("model shape " + name + ": every dimension must be at least 1");
        }
        if (heads % kvHeads != 0) {
            throw new IllegalArgumentException("model shape " + name + ": " + heads + " heads are not a multiple of "
                + kvHeads + " kv heads");
        }
    }

    /** A preset name or {@code hidden:intermediate:layers:heads:kvHeads:headDim:vocab}. */
    public static ModelShape parse(String spec) {
        switch (spec) {
            case "1b":
                return LLAMA_1B;
            case "7b":
                return LLAMA_7B;
            case "tiny":
                return TINY;
            default:
                break;
        }
        String[] p = spec.split(":", -1);
        if (p.length != 7) {
            throw new IllegalArgumentException("model shape '" + spec
                + "': expected 1b, 7b, tiny or hidden:intermediate:layers:heads:kvHeads:headDim:vocab");
        }
        int[] v = new int[7];
        for (int i = 0; i < 7; i++) {
            try {
                v[i] = Integer.parseInt(p[i].trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("model shape '" + spec + "': '" + p[i] + "' is not a number");
            }
        }
        return new ModelShape(spec, v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
    }

    /** q, k, v, o, gate, up, down, in the order a decoder layer reads them. */
    public List<Matrix> layerWeights() {
        int q = heads * headDim;
        int kv = kvHeads * headDim;
        return List.of(
            new Matrix("q_proj", q, hidden),
            new Matrix("k_proj", kv, hidden),
            new Matrix("v_proj", kv, hidden),
            new Matrix("o_proj", hidden, q),
            new Matrix("gate_proj", intermediate, hidden),
            new Matrix("up_proj", intermediate, hidden),
            new Matrix("down_proj", hidden, intermediate));
    }

    /** bf16 bytes of one layer's seven projections (norm weights left out: 0.01% of it). */
    public long layerBytes() {
        return layerWeights().stream().mapToLong(Matrix::bytes).sum();
    }

    /** Parameters of the whole model: layers' projections and norms, embedding, lm_head, final norm. */
    public long parameters() {
        long perLayer = layerBytes() / 2 + 2L * hidden;
        return layers * perLayer + 2L * vocab * hidden + hidden;
    }
}
