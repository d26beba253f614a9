package dev.loragateway.gateway.text;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.BitSet;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;

/**
 * A Hugging Face tokenizer read from a model directory: {@code tokenizer.json} (run by the Rust
 * {@code tokenizers} library through DJL) plus the few fields of {@code tokenizer_config.json} the
 * gateway needs (BOS/EOS token strings and the chat template).
 *
 * <p>Design notes:
 *
 * <ul>
 *   <li>DJL's defaults are not Hugging Face's: without options it truncates to 512 tokens
 *       ({@code LONGEST_FIRST}) and pads; given a {@code tokenizer_config.json} it also lower-cases,
 *       strips accents, prepends a space or "cleans up" spaces on decode. We therefore hand DJL only
 *       {@code tokenizer.json}, with truncation and padding switched off, and read the config
 *       ourselves. Encoding is then exactly the Rust library's {@code encode(text,
 *       add_special_tokens)}, i.e. special tokens as the post-processor says (BOS for Llama).
 *   <li>Decoding never applies {@code clean_up_tokenization_spaces} (as vLLM's streaming text).
 *   <li>DJL's telemetry probes a cloud metadata address on first use unless {@code
 *       OPT_OUT_TRACKING=true}; this class sets that system property (when unset) before DJL loads.
 *   <li>Thread-safe: the Rust tokenizer is immutable after load; the maps here are read-only.
 * </ul>
 */
public final class TextTokenizer implements AutoCloseable {

    static {
        if (System.getProperty("OPT_OUT_TRACKING") == null) {
            System.setProperty("OPT_OUT_TRACKING", "true");
        }
    }

    private static final ObjectMapper JSON = new ObjectMapper();

    private final HuggingFaceTokenizer hf;
    private final Map<String, Integer> tokenToId; // model vocab, then added tokens on top
    private final Map<Integer, String> idToToken;
    private final BitSet specialIds;
    private final int vocabSize;
    private final String bosToken;
    private final String eosToken;
    private final String chatTemplate;
    private final int maxTokenBytes;

    private TextTokenizer(
            HuggingFaceTokenizer hf,
            Map<String, Integer> tokenToId,
            BitSet specialIds,
            String bosToken,
            String eosToken,
            String chatTemplate) {
        this.hf = hf;
        this.tokenToId = Map.copyOf(tokenToId);
        Map<Integer, String> inverse = new HashMap<>();
        int max = -1;
        int longest = 1;
        for (Map.Entry<String, Integer> e : tokenToId.entrySet()) {
            inverse.put(e.getValue(), e.getKey());
            max = Math.max(max, e.getValue());
            longest = Math.max(longest, e.getKey().getBytes(StandardCharsets.UTF_8).length);
        }
        this.maxTokenBytes = longest;
        this.idToToken = Map.copyOf(inverse);
        this.vocabSize = max + 1;
        this.specialIds = specialIds;
        this.bosToken = bosToken;
        this.eosToken = eosToken;
        this.chatTemplate = chatTemplate;
    }

    /**
     * Loads {@code tokenizer.json} and, when present, {@code tokenizer_config.json} (and {@code
     * chat_template.jinja}, where newer transformers versions keep the template) from a model
     * directory.
     *
     * @throws IOException when {@code tokenizer.json} is missing or unreadable, or either file is
     *     not valid JSON
     */
    public static TextTokenizer load(Path modelDir) throws IOException {
        Path tokenizerFile = modelDir.resolve("tokenizer.json");
        if (!Files.isRegularFile(tokenizerFile)) {
            throw new IOException("no tokenizer.json in " + modelDir);
        }
        JsonNode tokenizerJson;
        try (InputStream in = Files.newInputStream(tokenizerFile)) {
            tokenizerJson = JSON.readTree(in);
        }
        Map<String, Integer> vocab = new HashMap<>();
        BitSet special = new BitSet();
        readVocab(tokenizerJson, vocab, special);

        String bos = null;
        String eos = null;
        String template = null;
        Path configFile = modelDir.resolve("tokenizer_config.json");
        if (Files.isRegularFile(configFile)) {
            JsonNode config = JSON.readTree(configFile.toFile());
            bos = tokenContent(config.get("bos_token"));
            eos = tokenContent(config.get("eos_token"));
            template = chatTemplateOf(config.get("chat_template"));
        }
        Path jinjaFile = modelDir.resolve("chat_template.jinja");
        if (template == null && Files.isRegularFile(jinjaFile)) {
            template = Files.readString(jinjaFile, StandardCharsets.UTF_8);
        }

        Map<String, String> options = new HashMap<>();
        options.put("addSpecialTokens", "true");
        options.put("truncation", "false");
        options.put("padding", "false");
        HuggingFaceTokenizer hf = HuggingFaceTokenizer.newInstance(tokenizerFile, options);
        return new TextTokenizer(hf, vocab, special, bos, eos, template);
    }

    private static void readVocab(JsonNode root, Map<String, Integer> vocab, BitSet special) {
        JsonNode model = root.path("model");
        JsonNode modelVocab = model.path("vocab");
        if (modelVocab.isObject()) { // BPE, WordPiece, WordLevel: {"token": id}
            for (Map.Entry<String, JsonNode> e : modelVocab.properties()) {
                vocab.put(e.getKey(), e.getValue().asInt());
            }
        } else if (modelVocab.isArray()) { // Unigram: [[piece, score], ...], id = index
            for (int i = 0; i < modelVocab.size(); i++) {
                vocab.put(modelVocab.get(i).get(0).asText(), i);
            }
        }
        for (JsonNode added : root.path("added_tokens")) {
            int id = added.path("id").asInt();
            vocab.put(added.path("content").asText(), id);
            if (added.path("special").asBoolean(false)) {
                special.set(id);
            }
        }
    }

    /** A special token in tokenizer_config.json: a plain string or an AddedToken object. */
    private static String tokenContent(JsonNode node) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (node.isTextual()) {
            return node.asText();
        }
        JsonNode content = node.get("content");
        return content != null && content.isTextual() ? content.asText() : null;
    }

    /** A chat_template: a string, or a list of {name, template} where "default" is chosen. */
    private static String chatTemplateOf(JsonNode node) {
        if (node == null || node.isNull()) {
            return null;
        }
        if (node.isTextual()) {
            return node.asText();
        }
        if (node.isArray()) {
            for (JsonNode named : node) {
                if ("default".equals(named.path("name").asText())) {
                    return named.path("template").asText();
                }
            }
        }
        return null;
    }

    /**
     * Encodes text. With {@code addSpecialTokens} the post-processor of tokenizer.json adds its
     * tokens (Llama: BOS in front); special tokens written in the text (e.g. {@code <|eot_id|>}) are
     * always recognised as such, as in transformers.
     */
    public int[] encode(String text, boolean addSpecialTokens) {
        long[] ids = hf.encode(text, addSpecialTokens, false).getIds();
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            out[i] = (int) ids[i];
        }
        return out;
    }

    /** Decodes ids to text, keeping special tokens. */
    public String decode(int[] ids) {
        return decode(ids, false);
    }

    /**
     * Decodes ids to text with the tokenizer's decoder. Invalid or incomplete UTF-8 (a character
     * cut between byte tokens) becomes U+FFFD.
     *
     * @param skipSpecialTokens leave out tokens marked special in tokenizer.json
     * @throws IllegalArgumentException for an id outside {@code [0, vocabSize())}
     */
    public String decode(int[] ids, boolean skipSpecialTokens) {
        long[] longs = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] < 0 || ids[i] >= vocabSize) {
                throw new IllegalArgumentException(
                        "token id " + ids[i] + " outside the vocabulary of " + vocabSize);
            }
            longs[i] = ids[i];
        }
        return hf.decode(longs, skipSpecialTokens);
    }

    /** Number of ids the tokenizer can produce: the highest id (model vocab or added) plus one. */
    public int vocabSize() {
        return vocabSize;
    }

    /**
     * The most bytes of UTF-8 text that one token can stand for: the longest vocabulary entry
     * (model vocabulary or added token) in UTF-8. The raw entry over-counts what it decodes to
     * (byte-level BPE writes one byte as one or two UTF-8 bytes, SentencePiece writes a space as the
     * three bytes of {@code ▁}), so no prompt of {@code n} tokens that these vocabularies produce
     * from their bytes is longer than {@code n × maxTokenBytes()} bytes.
     */
    public int maxTokenBytes() {
        return maxTokenBytes;
    }

    /** The id of a token string (an added token or a model vocabulary entry), if any. */
    public OptionalInt tokenId(String token) {
        Integer id = tokenToId.get(token);
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }

    /** The raw vocabulary string of an id (e.g. {@code "Ġworld"} or {@code "<0x0A>"}), if any. */
    public Optional<String> token(int id) {
        return Optional.ofNullable(idToToken.get(id));
    }

    /** Whether tokenizer.json marks this id as a special added token. */
    public boolean isSpecial(int id) {
        return id >= 0 && specialIds.get(id);
    }

    /** {@code bos_token} of tokenizer_config.json. */
    public Optional<String> bosToken() {
        return Optional.ofNullable(bosToken);
    }

    /** {@code eos_token} of tokenizer_config.json. */
    public Optional<String> eosToken() {
        return Optional.ofNullable(eosToken);
    }

    /** The Jinja chat template (tokenizer_config.json's, or chat_template.jinja's). */
    public Optional<String> chatTemplate() {
        return Optional.ofNullable(chatTemplate);
    }

    /** Frees the native tokenizer. */
    @Override
    public void close() {
        hf.close();
    }
}
