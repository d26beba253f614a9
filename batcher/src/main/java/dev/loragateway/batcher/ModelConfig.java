package dev.loragateway.batcher;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.adapters.ModelShape;
import dev.loragateway.kernels.cpu.Rope;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.Set;

/**
 * The architecture of a Hugging Face Llama-family model, read from {@code config.json} (and
 * {@code generation_config.json} for end-of-sequence ids). Supported {@code model_type}s: llama,
 * mistral, qwen2. Anything we cannot run faithfully is refused with a message that names it.
 */
public record ModelConfig(
    String modelType,
    int hiddenSize,
    int intermediateSize,
    int numLayers,
    int numHeads,
    int numKvHeads,
    int headDim,
    int vocabSize,
    double rmsNormEps,
    double ropeTheta,
    Rope.Llama3Scaling ropeScaling,
    int maxPositionEmbeddings,
    boolean tieWordEmbeddings,
    boolean qkvBias,
    boolean outputBias,
    int slidingWindow,
    int bosTokenId,
    int[] eosTokenIds) {

    private static final ObjectMapper JSON = new ObjectMapper();
    public static final Set<String> SUPPORTED_TYPES = Set.of("llama", "mistral", "qwen2");

    /** Dimension of the query projection's output. */
    public int qDim() {
        return numHeads * headDim;
    }

    /** Dimension of each of the key and value projections' outputs. */
    public int kvDim() {
        return numKvHeads * headDim;
    }

    /** The projection widths an adapter must fit. */
    public ModelShape shape() {
        return new ModelShape(numLayers, hiddenSize, intermediateSize, qDim(), kvDim());
    }

    public boolean isEos(int token) {
        for (int e : eosTokenIds) {
            if (e == token) {
                return true;
            }
        }
        return false;
    }

    /** Reads {@code dir/config.json} and, when present, {@code dir/generation_config.json}. */
    public static ModelConfig load(Path dir) throws IOException {
        Path cfgFile = dir.resolve("config.json");
        if (!Files.isRegularFile(cfgFile)) {
            throw new ModelFormatException("model directory " + dir + " has no config.json");
        }
        JsonNode c;
        try {
            c = JSON.readTree(cfgFile.toFile());
        } catch (IOException e) {
            throw new ModelFormatException("config.json is not valid JSON: " + e.getMessage());
        }
        JsonNode gen = null;
        Path genFile = dir.resolve("generation_config.json");
        if (Files.isRegularFile(genFile)) {
            try {
                gen = JSON.readTree(genFile.toFile());
            } catch (IOException e) {
                throw new ModelFormatException("generation_config.json is not valid JSON: " + e.getMessage());
            }
        }
        return parse(c, gen);
    }

    static ModelConfig parse(JsonNode c, JsonNode gen) {
        if (c == null || !c.isObject()) {
            throw new ModelFormatException("config.json is not a JSON object");
        }
        String type = c.path("model_type").asText("");
        if (type.isEmpty()) {
            throw new ModelFormatException("config.json has no model_type (supported: llama, mistral, qwen2)");
        }
        if (!SUPPORTED_TYPES.contains(type)) {
            throw new ModelFormatException("unsupported model_type '" + type + "' (supported: llama, mistral, qwen2)");
        }
        String act = c.path("hidden_act").asText("silu");
        if (!act.equals("silu")) {
            throw new ModelFormatException("unsupported hidden_act '" + act + "' (only silu)");
        }
        if (c.path("mlp_bias").asBoolean(false)) {
            throw new ModelFormatException("unsupported mlp_bias: true");
        }
        int hidden = requireInt(c, "hidden_size");
        int heads = requireInt(c, "num_attention_heads");
        int kvHeads = c.has("num_key_value_heads") && !c.get("num_key_value_heads").isNull()
            ? requireInt(c, "num_key_value_heads") : heads;
        int headDim = c.has("head_dim") && !c.get("head_dim").isNull() ? requireInt(c, "head_dim") : hidden / heads;
        if (heads % kvHeads != 0) {
            throw new ModelFormatException("num_attention_heads " + heads + " is not a multiple of num_key_value_heads " + kvHeads);
        }
        if (headDim % 2 != 0) {
            throw new ModelFormatException("head_dim " + headDim + " is odd; rotary embeddings need an even head dimension");
        }
        Rope.Llama3Scaling scaling = null;
        JsonNode rs = c.get("rope_scaling");
        if (rs != null && !rs.isNull()) {
            String rt = rs.has("rope_type") ? rs.path("rope_type").asText() : rs.path("type").asText("");
            if (rt.equals("llama3")) {
                scaling = new Rope.Llama3Scaling(
                    requireDouble(rs, "factor"),
                    rs.path("low_freq_factor").asDouble(1.0),
                    rs.path("high_freq_factor").asDouble(4.0),
                    rs.has("original_max_position_embeddings") ? requireInt(rs, "original_max_position_embeddings") : 8192);
            } else if (!rt.equals("default")) {
                throw new ModelFormatException("unsupported rope_scaling type '" + rt + "' (supported: llama3)");
            }
        }
        boolean qkvBias = type.equals("qwen2") || c.path("attention_bias").asBoolean(false);
        boolean oBias = !type.equals("qwen2") && c.path("attention_bias").asBoolean(false);
        int sliding = 0;
        JsonNode sw = c.get("sliding_window");
        boolean useSliding = !type.equals("qwen2") || c.path("use_sliding_window").asBoolean(false);
        if (useSliding && sw != null && sw.isIntegralNumber()) {
            sliding = sw.asInt();
        }
        int bos = c.path("bos_token_id").asInt(-1);
        Set<Integer> eos = new LinkedHashSet<>();
        addIds(c.get("eos_token_id"), eos);
        if (gen != null) {
            addIds(gen.get("eos_token_id"), eos);
            if (bos < 0) {
                bos = gen.path("bos_token_id").asInt(-1);
            }
        }
        return new ModelConfig(type, hidden, requireInt(c, "intermediate_size"), requireInt(c, "num_hidden_layers"),
            heads, kvHeads, headDim, requireInt(c, "vocab_size"), c.path("rms_norm_eps").asDouble(1e-6),
            c.path("rope_theta").asDouble(10000.0), scaling, c.path("max_position_embeddings").asInt(2048),
            c.path("tie_word_embeddings").asBoolean(false), qkvBias, oBias, sliding, bos,
            eos.stream().mapToInt(Integer::intValue).toArray());
    }

    private static void addIds(JsonNode n, Set<Integer> out) {
        if (n == null || n.isNull()) {
            return;
        }
        if (n.isArray()) {
            n.forEach(e -> out.add(e.asInt()));
        } else if (n.isIntegralNumber()) {
            out.add(n.asInt());
        }
    }

    private static int requireInt(JsonNode c, String field) {
        JsonNode n = c.get(field);
        if (n == null || n.isNull()) {
            throw new ModelFormatException("config.json is missing '" + field + "'");
        }
        if (!n.isIntegralNumber() || n.asLong() <= 0 || n.asLong() > Integer.MAX_VALUE) {
            throw new ModelFormatException("config.json '" + field + "' must be a positive integer, got " + n);
        }
        return n.asInt();
    }

    private static double requireDouble(JsonNode c, String field) {
        JsonNode n = c.get(field);
        if (n == null || !n.isNumber()) {
            throw new ModelFormatException("rope_scaling is missing numeric '" + field + "'");
        }
        return n.asDouble();
    }
}
