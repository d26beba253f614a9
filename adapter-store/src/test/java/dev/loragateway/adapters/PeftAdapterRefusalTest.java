package dev.loragateway.adapters;

import static dev.loragateway.adapters.PeftFixture.SHAPE;
import static dev.loragateway.adapters.Refusals.assertRefused;

import dev.loragateway.kernels.DType;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** One test per refusal: each message names the field or tensor at fault and both numbers. */
class PeftAdapterRefusalTest {
    private static final String Q0A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    private static final String Q0B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";

    @TempDir
    Path tmp;

    private String refused(PeftFixture f, String... fragments) {
        return refused(f, 64, fragments);
    }

    private String refused(PeftFixture f, int maxRank, String... fragments) {
        Path dir = f.write(tmp.resolve("a" + System.nanoTime()));
        return assertRefused(() -> PeftAdapterReader.readDirectory("t", dir, SHAPE, maxRank), fragments);
    }

    // --- adapter_config.json ---

    @Test
    void dora() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.config.put("use_dora", true);
        refused(f, "DoRA (use_dora) is not supported");
    }

    @ParameterizedTest
    @ValueSource(strings = {"all", "lora_only"})
    void trainedBiases(String bias) {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.config.put("bias", bias);
        refused(f, "bias \"" + bias + "\"", "trained biases");
    }

    @Test
    void modulesToSave() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.config.putArray("modules_to_save").add("lm_head");
        refused(f, "modules_to_save", "lm_head");
    }

    @ParameterizedTest
    @ValueSource(strings = {"embed_tokens", "lm_head", "fc1", "model.layers.0.self_attn"})
    void unknownTargetModule(String module) {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.config.withArray("target_modules").add(module);
        refused(f, "unknown target module " + module + "; supported: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
    }

    @Test
    void notLora() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.config.put("peft_type", "IA3");
        refused(f, "peft_type", "IA3", "LORA");
    }

    @Test
    void baseRewritingInitialisation() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.config.put("init_lora_weights", "pissa_niter_4");
        refused(f, "init_lora_weights", "pissa_niter_4", "path_initial_model_for_weight_conversion");
    }

    @Test
    void missingR() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.config.remove("r");
        refused(f, "adapter_config.json", "\"r\" is missing");
    }

    @ParameterizedTest
    @ValueSource(strings = {"\"8\"", "0", "-2", "2.5", "null", "[8]"})
    void badR(String r) throws IOException {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.config.set("r", PeftFixture.JSON.readTree(r));
        refused(f, "\"r\"", r.equals("null") ? "missing" : "must be a positive integer, got " + r);
    }

    @Test
    void badTypes() throws IOException {
        String[][] cases = {
            {"lora_alpha", "\"sixteen\"", "\"lora_alpha\" must be a number"},
            {"use_rslora", "\"yes\"", "\"use_rslora\" must be true or false"},
            {"target_modules", "5", "\"target_modules\" must be a string or a list of strings"},
            {"target_modules", "[]", "\"target_modules\" is empty"},
            {"target_modules", "\"(q_proj\"", "\"target_modules\" has an invalid regular expression '(q_proj'"},
            {"rank_pattern", "{\"q_proj\": \"x\"}", "\"rank_pattern.q_proj\" must be a positive integer, got \"x\""},
            {"alpha_pattern", "[1]", "\"alpha_pattern\" must be an object"},
            {"layers_to_transform", "\"0\"", "\"layers_to_transform\" must be a layer index"},
            {"bias", "false", "\"bias\" must be a string"},
        };
        for (String[] c : cases) {
            PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
            f.config.set(c[0], PeftFixture.JSON.readTree(c[1]));
            refused(f, c[2]);
        }
    }

    @Test
    void configNotJson() throws IOException {
        Path dir = PeftFixture.adapter(8, 16, "q_proj").write(tmp.resolve("a"));
        Files.writeString(PeftFixture.configFile(dir), "{\"r\": 8,");
        assertRefused(() -> PeftAdapterReader.readDirectory("t", dir, SHAPE, 64), "adapter_config.json is not valid JSON");
    }

    @Test
    void pickleOnly() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("pickled"));
        Files.writeString(dir.resolve("adapter_config.json"), "{\"r\": 8, \"lora_alpha\": 16}");
        Files.write(dir.resolve("adapter_model.bin"), new byte[] {(byte) 0x80, 2});
        assertRefused(() -> PeftAdapterReader.readDirectory("t", dir, SHAPE, 64),
            "pickled adapter_model.bin is never loaded; save the adapter with safetensors");
    }

    @Test
    void rankAboveMax() {
        refused(PeftFixture.adapter(128, 16, "q_proj"), 64, "adapter rank 128 exceeds --max-lora-rank 64");
    }

    @Test
    void rankPatternAboveMax() {
        PeftFixture f = PeftFixture.config(8, 16, "q_proj").loraAll(LoraModule.Q_PROJ, 8);
        f.config.putObject("rank_pattern").put("model.layers.0.self_attn.q_proj", 32);
        f.remove(Q0A).remove(Q0B).lora(0, LoraModule.Q_PROJ, 32);
        refused(f, 16, "adapter rank 32 exceeds --max-lora-rank 16", "model.layers.0.self_attn.q_proj");
    }

    // --- tensor names ---

    @Test
    void embeddingLora() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj").put("base_model.model.model.embed_tokens.lora_embedding_A", 8, 100);
        refused(f, "base_model.model.model.embed_tokens.lora_embedding_A", "embedding LoRA");
    }

    @ParameterizedTest
    @ValueSource(strings = {"base_model.model.lm_head.lora_A.weight", "base_model.model.model.embed_tokens.lora_A.weight"})
    void lmHeadOrEmbeddingModule(String key) {
        refused(PeftFixture.adapter(8, 16, "q_proj").put(key, 8, 40), key, "lm_head or embed_tokens is not supported");
    }

    @ParameterizedTest
    @ValueSource(strings = {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias",
        "base_model.model.model.layers.0.self_attn.q_proj.bias"})
    void biasTensors(String key) {
        refused(PeftFixture.adapter(8, 16, "q_proj").put(key, 40), key, "trained biases");
    }

    @Test
    void doraMagnitude() {
        String key = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector";
        refused(PeftFixture.adapter(8, 16, "q_proj").put(key, 40), key, "DoRA");
    }

    @ParameterizedTest
    @ValueSource(strings = {"model.layers.0.self_attn.q_proj.lora_A.weight", "base_model.model.model.norm.weight",
        "base_model.model.model.layers.0.self_attn.rotary.lora_A.weight",
        "base_model.model.model.layers.0.mlp.q_proj.lora_A.weight"})
    void unrecognisedKey(String key) {
        refused(PeftFixture.adapter(8, 16, "q_proj").put(key, 8, 40), "unrecognised tensor " + key);
    }

    @Test
    void layerBeyondTheBase() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj").lora(3, LoraModule.Q_PROJ, 8);
        refused(f, "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight is for layer 3 but the base model has 3 layers");
    }

    @Test
    void twoAdaptersInOneFile() {
        PeftFixture f = PeftFixture.config(8, 16, "q_proj");
        f.infix = "default";
        f.loraAll(LoraModule.Q_PROJ, 8);
        f.put("base_model.model.model.layers.0.self_attn.v_proj.lora_A.other.weight", 8, 40);
        refused(f, "belongs to adapter 'other' but other tensors to 'default'");
    }

    @Test
    void duplicateTensor() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj").put("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", 8, 40);
        refused(f, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight duplicates " + Q0A);
    }

    // --- shapes and ranks ---

    @Test
    void loraAShape() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj").put(Q0A, 8, 96);
        refused(f, Q0A + " has shape [8, 96] but the base model needs [8, 40] (rank 8 × q_proj in 40)");
    }

    @Test
    void loraBShape() {
        String key = "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight";
        PeftFixture f = PeftFixture.adapter(8, 16, "k_proj").put(key, 40, 8);
        refused(f, key + " has shape [40, 8] but the base model needs [24, 8] (k_proj out 24 × rank 8)");
    }

    @Test
    void loraARankDiffersFromConfig() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj").put(Q0A, 4, 40);
        refused(f, Q0A + " has rank 4 but adapter_config.json says r=8");
    }

    @Test
    void loraBRankDiffersFromConfig() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj").put(Q0B, 40, 16);
        refused(f, Q0B + " has rank 16 but adapter_config.json says r=8");
    }

    @Test
    void rankDiffersFromRankPattern() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.config.putObject("rank_pattern").put("q_proj", 4);
        refused(f, Q0A + " has rank 8 but adapter_config.json says r=4 for model.layers.0.self_attn.q_proj (rank_pattern)");
    }

    @Test
    void notAMatrix() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj").put(Q0A, 8, 40, 1);
        refused(f, Q0A + " has shape [8, 40, 1]", "2 dimensions");
    }

    @Test
    void loraAWithoutLoraB() {
        refused(PeftFixture.adapter(8, 16, "q_proj").remove(Q0B), Q0A + " has no matching lora_B");
    }

    @Test
    void loraBWithoutLoraA() {
        refused(PeftFixture.adapter(8, 16, "q_proj").remove(Q0A), Q0B + " has no matching lora_A");
    }

    @Test
    void tensorsForAnUntargetedModule() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj").lora(2, LoraModule.K_PROJ, 8);
        refused(f, "base_model.model.model.layers.2.self_attn.k_proj.lora_A.weight adapts model.layers.2.self_attn.k_proj",
            "does not target");
    }

    @Test
    void tensorsForALayerOutsideLayersToTransform() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.config.putArray("layers_to_transform").add(0).add(2);
        refused(f, "adapts model.layers.1.self_attn.q_proj", "does not target");
    }

    @Test
    void targetedModuleWithoutTensors() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.config.withArray("target_modules").add("down_proj");
        refused(f, "adapter_config.json targets model.layers.0.mlp.down_proj but adapter_model.safetensors has no lora_A/lora_B");
    }

    @Test
    void nothingTargeted() {
        PeftFixture f = PeftFixture.config(8, 16, "q_proj");
        f.config.put("target_modules", "nothing_matches");
        refused(f, "targets no projection");
    }

    // --- values ---

    @Test
    void nanInBf16() {
        PeftFixture f = PeftFixture.config(8, 16, "q_proj").dtype(DType.BF16).loraAll(LoraModule.Q_PROJ, 8);
        f.values(Q0B)[8 * 3 + 5] = Float.NaN;
        refused(f, Q0B + " element 29 (row 3, column 5) is NaN");
    }

    @Test
    void infinityInF32AndF16() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.values(Q0A)[41] = Float.NEGATIVE_INFINITY;
        refused(f, Q0A + " element 41 (row 1, column 1) is -Infinity");
        PeftFixture h = PeftFixture.config(8, 16, "q_proj").dtype(DType.F16).loraAll(LoraModule.Q_PROJ, 8);
        h.values(Q0A)[0] = 1e6f; // past half's range: stored as +Inf
        refused(h, Q0A + " element 0 (row 0, column 0) is Infinity");
    }

    // --- malformed safetensors: the kernels' message comes through ---

    @Test
    void truncatedFile() throws IOException {
        Path dir = PeftFixture.adapter(8, 16, "q_proj").write(tmp.resolve("a"));
        byte[] all = Files.readAllBytes(PeftFixture.weightsFile(dir));
        Files.write(PeftFixture.weightsFile(dir), Arrays.copyOf(all, all.length - 10));
        assertRefused(() -> PeftAdapterReader.readDirectory("t", dir, SHAPE, 64),
            "invalid adapter_model.safetensors", "out of range");
    }

    @Test
    void headerLengthPastTheEnd() throws IOException {
        Path dir = PeftFixture.adapter(8, 16, "q_proj").write(tmp.resolve("a"));
        byte[] all = Files.readAllBytes(PeftFixture.weightsFile(dir));
        ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN).putLong(0, all.length);
        Files.write(PeftFixture.weightsFile(dir), all);
        assertRefused(() -> PeftAdapterReader.readDirectory("t", dir, SHAPE, 64),
            "invalid adapter_model.safetensors: header length " + all.length + " runs past the end of the file");
    }

    @Test
    void overlappingOffsets() throws IOException {
        Path dir = tmp.resolve("a");
        PeftFixture.adapter(8, 16, "q_proj").write(dir);
        String header = "{\"" + Q0A + "\":{\"dtype\":\"F32\",\"shape\":[8,40],\"data_offsets\":[0,1280]},"
            + "\"" + Q0B + "\":{\"dtype\":\"F32\",\"shape\":[40,8],\"data_offsets\":[640,1920]}}";
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + 1920).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        Files.write(PeftFixture.weightsFile(dir), b.array());
        assertRefused(() -> PeftAdapterReader.readDirectory("t", dir, SHAPE, 64),
            "invalid adapter_model.safetensors: tensor " + Q0B, "overlap");
    }

    @Test
    void missingWeights() throws IOException {
        Path dir = PeftFixture.adapter(8, 16, "q_proj").write(tmp.resolve("a"));
        Files.delete(PeftFixture.weightsFile(dir));
        assertRefused(() -> PeftAdapterReader.readDirectory("t", dir, SHAPE, 64), "has no adapter_model.safetensors");
        assertRefused(() -> PeftAdapterReader.read("t", PeftFixture.configFile(dir), PeftFixture.weightsFile(dir), SHAPE, 64),
            "adapter_model.safetensors is missing");
    }
}
