package dev.loragateway.gateway.demo;

import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.SafeTensorsWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Writes a randomly initialised Llama model as a normal Hugging Face directory: {@code config.json},
 * {@code generation_config.json}, {@code model.safetensors}, the demo tokenizer files and, under
 * {@code adapters/}, the PEFT LoRA adapters of {@link DemoAdapters}.
 *
 * <p>Everything is a pure function of the {@link Options}: the same options give byte-identical
 * files. Each tensor has its own random stream, seeded from the model seed and the tensor's name.
 * Weights are streamed to disk ({@link SafeTensorsWriter}), so multi-gigabyte models cost a few MB
 * of heap and are written at disk speed.
 *
 * <p>Scales keep activations sane: embeddings have std 1, every projection std {@code 1/sqrt(fan_in)}
 * (so each block's output is about as large as its normalised input), norm weights {@code 1 ± 0.05},
 * and the LM head std {@code 3/sqrt(hidden)} so that logits spread over a few units and greedy
 * decoding depends on the context. The LM-head rows of every token that is not plain text (special
 * and reserved tokens, control characters, lone non-ASCII bytes that would decode to U+FFFD) are
 * scaled down by 10, so that greedy decoding writes printable ASCII and does not stop after a few
 * tokens; sampling still reaches those tokens now and then.
 */
public final class DemoModel {
    static final ObjectMapper JSON = new ObjectMapper();
    /** The id the gateway gives the demo model; also the adapters' {@code base_model_name_or_path}. */
    public static final String MODEL_ID = "demo";
    static final float LM_HEAD_GAIN = 3f;
    static final float DAMPED_ROW_GAIN = 0.1f;
    private static final int CHUNK = 1 << 16;

    /** The model's shape, storage dtype and random seed. */
    public record Options(int hiddenSize, int intermediateSize, int layers, int heads, int kvHeads, int vocabSize,
                          DType dtype, long seed) {
        public Options {
            if (hiddenSize <= 0 || intermediateSize <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || vocabSize <= 0) {
                throw new IllegalArgumentException("every size must be positive");
            }
            if (hiddenSize % heads != 0 || (hiddenSize / heads) % 2 != 0) {
                throw new IllegalArgumentException("hidden_size " + hiddenSize + " must be an even multiple of heads " + heads);
            }
            if (heads % kvHeads != 0) {
                throw new IllegalArgumentException("heads " + heads + " must be a multiple of kv heads " + kvHeads);
            }
            if (dtype == null) {
                throw new IllegalArgumentException("dtype is required");
            }
        }

        /** The embedded demo model: 2 layers, hidden 64, vocab 512, float32 (about 0.6 MB of weights). */
        public static Options tiny() {
            return new Options(64, 172, 2, 4, 2, 512, DType.F32, 20240601L);
        }

        public Options withDtype(DType d) {
            return new Options(hiddenSize, intermediateSize, layers, heads, kvHeads, vocabSize, d, seed);
        }

        public Options withSeed(long s) {
            return new Options(hiddenSize, intermediateSize, layers, heads, kvHeads, vocabSize, dtype, s);
        }

        public int headDim() {
            return hiddenSize / heads;
        }

        public int qDim() {
            return heads * headDim();
        }

        public int kvDim() {
            return kvHeads * headDim();
        }
    }

    private DemoModel() {
    }

    /** Writes the model directory {@code out} (created if needed; files there are replaced). */
    public static void write(Path out, Options o) throws IOException {
        Files.createDirectories(out);
        DemoTokenizer.write(out, o.vocabSize());
        JsonNode tokenizer = JSON.readTree(out.resolve("tokenizer.json").toFile());
        Map<String, Integer> special = specialTokens(tokenizer);
        int bos = require(special, "<|begin_of_text|>");
        int eot = require(special, "<|eot_id|>");
        int eos = require(special, "<|end_of_text|>");
        writeJson(out.resolve("config.json"), config(o, bos, eot));
        ObjectNode gen = JSON.createObjectNode();
        gen.put("bos_token_id", bos);
        gen.putArray("eos_token_id").add(eos).add(eot);
        gen.put("transformers_version", "4.46.0");
        writeJson(out.resolve("generation_config.json"), gen);
        writeWeights(out.resolve("model.safetensors"), o, plainText(tokenizer, o.vocabSize()));
        DemoAdapters.write(out.resolve("adapters"), o);
    }

    static ObjectNode config(Options o, int bos, int eos) {
        ObjectNode c = JSON.createObjectNode();
        c.putArray("architectures").add("LlamaForCausalLM");
        c.put("attention_bias", false);
        c.put("attention_dropout", 0.0);
        c.put("bos_token_id", bos);
        c.put("eos_token_id", eos);
        c.put("head_dim", o.headDim());
        c.put("hidden_act", "silu");
        c.put("hidden_size", o.hiddenSize());
        c.put("initializer_range", 0.02);
        c.put("intermediate_size", o.intermediateSize());
        c.put("max_position_embeddings", 2048);
        c.put("mlp_bias", false);
        c.put("model_type", "llama");
        c.put("num_attention_heads", o.heads());
        c.put("num_hidden_layers", o.layers());
        c.put("num_key_value_heads", o.kvHeads());
        c.put("pretraining_tp", 1);
        c.put("rms_norm_eps", 1e-5);
        c.putNull("rope_scaling");
        c.put("rope_theta", 500000.0);
        c.put("tie_word_embeddings", false);
        c.put("torch_dtype", torchDtype(o.dtype()));
        c.put("transformers_version", "4.46.0");
        c.put("use_cache", true);
        c.put("vocab_size", o.vocabSize());
        return c;
    }

    static String torchDtype(DType d) {
        return switch (d) {
            case F32 -> "float32";
            case F16 -> "float16";
            case BF16 -> "bfloat16";
        };
    }

    private static void writeWeights(Path file, Options o, boolean[] plain) throws IOException {
        int h = o.hiddenSize();
        int inter = o.intermediateSize();
        DType dt = o.dtype();
        SafeTensorsWriter w = new SafeTensorsWriter();
        Map<String, float[]> scale = new HashMap<>(); // name -> {mean, std}
        w.declare("model.embed_tokens.weight", dt, o.vocabSize(), h);
        scale.put("model.embed_tokens.weight", new float[] {0, 1});
        for (int l = 0; l < o.layers(); l++) {
            String p = "model.layers." + l + ".";
            decl(w, scale, p + "input_layernorm.weight", dt, 1, 0.05f, h);
            decl(w, scale, p + "self_attn.q_proj.weight", dt, 0, inv(h), o.qDim(), h);
            decl(w, scale, p + "self_attn.k_proj.weight", dt, 0, inv(h), o.kvDim(), h);
            decl(w, scale, p + "self_attn.v_proj.weight", dt, 0, inv(h), o.kvDim(), h);
            decl(w, scale, p + "self_attn.o_proj.weight", dt, 0, inv(o.qDim()), h, o.qDim());
            decl(w, scale, p + "post_attention_layernorm.weight", dt, 1, 0.05f, h);
            decl(w, scale, p + "mlp.gate_proj.weight", dt, 0, inv(h), inter, h);
            decl(w, scale, p + "mlp.up_proj.weight", dt, 0, inv(h), inter, h);
            decl(w, scale, p + "mlp.down_proj.weight", dt, 0, inv(inter), h, inter);
        }
        decl(w, scale, "model.norm.weight", dt, 1, 0.05f, h);
        decl(w, scale, "lm_head.weight", dt, 0, LM_HEAD_GAIN * inv(h), o.vocabSize(), h);
        float[] buf = new float[CHUNK];
        w.write(file, Map.of("format", "pt"), (t, sink) -> {
            float[] ms = scale.get(t.name());
            SplittableRandom r = rng(o.seed(), t.name());
            if (t.name().equals("lm_head.weight")) { // row by row, rows of non-text tokens damped
                float[] row = new float[h];
                for (int v = 0; v < o.vocabSize(); v++) {
                    gaussian(r, row, h, ms[0], ms[1] * (plain[v] ? 1f : DAMPED_ROW_GAIN));
                    sink.write(row);
                }
                return;
            }
            for (long left = t.size(); left > 0; ) {
                int n = (int) Math.min(left, buf.length);
                gaussian(r, buf, n, ms[0], ms[1]);
                sink.write(buf, 0, n);
                left -= n;
            }
        });
    }

    private static void decl(SafeTensorsWriter w, Map<String, float[]> scale, String name, DType dt, float mean, float std,
                             int... shape) {
        w.declare(name, dt, shape);
        scale.put(name, new float[] {mean, std});
    }

    private static float inv(int fanIn) {
        return (float) (1 / Math.sqrt(fanIn));
    }

    /** A tensor's own random stream: the model seed and the name, mixed (stable across JVMs). */
    static SplittableRandom rng(long seed, String name) {
        return new SplittableRandom(mix(seed ^ mix(name.hashCode() * 0x9E3779B97F4A7C15L + 0x632BE59BD9B4E019L)));
    }

    private static long mix(long z) { // the SplitMix64 finaliser
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    private static final float IRWIN_HALL_SCALE = (float) (Math.sqrt(3) / 65536);

    /**
     * Fills {@code out[0..n)} with approximately normal values (the sum of four uniform 16-bit
     * numbers from one 64-bit draw, Irwin–Hall n=4: mean 0, variance 1, bounded by ±3.46).
     */
    static void gaussian(SplittableRandom r, float[] out, int n, float mean, float std) {
        float k = IRWIN_HALL_SCALE * std;
        for (int i = 0; i < n; i++) {
            long x = r.nextLong();
            int s = (int) (x & 0xFFFF) + (int) ((x >>> 16) & 0xFFFF) + (int) ((x >>> 32) & 0xFFFF) + (int) (x >>> 48);
            out[i] = mean + (s - 131070) * k;
        }
    }

    private static Map<String, Integer> specialTokens(JsonNode tokenizer) {
        Map<String, Integer> out = new HashMap<>();
        for (JsonNode t : tokenizer.path("added_tokens")) {
            if (t.path("special").asBoolean(false)) {
                out.put(t.path("content").asText(), t.path("id").asInt());
            }
        }
        return out;
    }

    /**
     * Which ids are plain text: model-vocabulary tokens whose byte-level (GPT-2 alphabet) spelling is
     * printable ASCII, 'Ġ' (space) or 'Ċ' (newline). Added tokens never are.
     */
    private static boolean[] plainText(JsonNode tokenizer, int vocabSize) {
        boolean[] plain = new boolean[vocabSize];
        tokenizer.path("model").path("vocab").fields().forEachRemaining(e -> {
            int id = e.getValue().asInt();
            if (id < 0 || id >= vocabSize) {
                return;
            }
            boolean ok = true;
            for (char ch : e.getKey().toCharArray()) {
                ok &= (ch >= '!' && ch <= '~') || ch == '\u0120' || ch == '\u010A';
            }
            plain[id] = ok;
        });
        for (JsonNode t : tokenizer.path("added_tokens")) {
            int id = t.path("id").asInt(-1);
            if (id >= 0 && id < vocabSize) {
                plain[id] = false;
            }
        }
        return plain;
    }

    private static int require(Map<String, Integer> special, String token) {
        Integer id = special.get(token);
        if (id == null) {
            throw new IllegalStateException("the demo tokenizer has no special token " + token);
        }
        return id;
    }

    /** Writes JSON as Python's {@code json.dumps(indent=2)} lays it out, with a final newline. */
    static void writeJson(Path file, JsonNode node) throws IOException {
        DefaultIndenter nl = new DefaultIndenter("  ", "\n");
        DefaultPrettyPrinter pp = new DefaultPrettyPrinter()
            .withSeparators(Separators.createDefaultInstance().withObjectFieldValueSpacing(Separators.Spacing.AFTER)
                .withObjectEmptySeparator("").withArrayEmptySeparator(""));
        pp.indentArraysWith(nl);
        pp.indentObjectsWith(nl);
        String text = JSON.writer(pp).writeValueAsString(node);
        Files.writeString(file, text + "\n", StandardCharsets.UTF_8);
    }
}
