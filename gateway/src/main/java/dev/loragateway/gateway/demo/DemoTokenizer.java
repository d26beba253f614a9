package dev.loragateway.gateway.demo;

import dev.loragateway.gateway.text.ByteLevelBpe;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * Writes the tokenizer of the embedded demo model: a Llama-3-style byte-level BPE whose merges are
 * learned (by {@link ByteLevelBpe}) from a few paragraphs of English embedded here, so the files
 * are the same on every run and machine.
 *
 * <p>Id layout for {@code vocabSize = V} (always exactly V ids, so a model with {@code vocab_size
 * = V} matches):
 *
 * <pre>
 *   0 .. 255            the 256 bytes, in GPT-2's byte-to-unicode alphabet (id = byte value)
 *   256 .. 256+M-1      M learned merges, M = min(V - 261, 697)
 *   ..  V-6             {@code <|reserved_special_token_N|>} padding (special, never produced)
 *   V-5 .. V-1          {@code <|begin_of_text|> <|end_of_text|> <|start_header_id|>
 *                        <|end_header_id|> <|eot_id|>}
 * </pre>
 *
 * <p>The corpus offers 697 merges (after which every corpus word is one token), so vocabularies
 * above 958 are padded. The padding is added special tokens, as Llama 3's reserved tokens: never
 * produced by encoding, skipped by {@code decode(ids, true)}. Their cost is load time: the Rust
 * tokenizers library builds its added-token matcher superlinearly (measured with DJL: 0.5 s at
 * V = 8192, 1.4 s at 16384, 3-4 s at 32000; padding in the model vocabulary instead loads in 20 ms
 * but would make the reserved ids ordinary text). Pre-tokenizer and decoder are {@code ByteLevel}
 * (GPT-2 regex, no prefix space); the post-processor prepends {@code <|begin_of_text|>};
 * tokenizer_config.json has BOS {@code <|begin_of_text|>}, EOS {@code <|eot_id|>} and the Llama-3
 * instruct chat template (no {@code add_bos_token}: like Llama 3's, BOS comes from the
 * post-processor).
 */
public final class DemoTokenizer {

    /** The special tokens, in id order, occupying the top five ids. */
    public static final List<String> SPECIAL_TOKENS = List.of("<|begin_of_text|>",
            "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>");

    /** Smallest vocabulary: the 256 bytes plus the special tokens. */
    public static final int MIN_VOCAB_SIZE = 256 + 5;

    /** The Llama-3 instruct chat template (as in Meta-Llama-3-8B-Instruct). */
    public static final String CHAT_TEMPLATE = "{% set loop_messages = messages %}"
            + "{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
            + "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
            + "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
            + "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
            + "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

    private DemoTokenizer() {}

    /** The id of one of {@link #SPECIAL_TOKENS} in a demo vocabulary of the given size. */
    public static int specialTokenId(int vocabSize, String token) {
        int index = SPECIAL_TOKENS.indexOf(token);
        if (index < 0) {
            throw new IllegalArgumentException("not a demo special token: " + token);
        }
        return vocabSize - SPECIAL_TOKENS.size() + index;
    }

    /** Id of {@code <|begin_of_text|>} (BOS). */
    public static int bosId(int vocabSize) {
        return specialTokenId(vocabSize, "<|begin_of_text|>");
    }

    /** Id of {@code <|eot_id|>} (the chat EOS). */
    public static int eosId(int vocabSize) {
        return specialTokenId(vocabSize, "<|eot_id|>");
    }

    /**
     * Writes {@code tokenizer.json} and {@code tokenizer_config.json} into {@code dir} (created if
     * missing) for a vocabulary of exactly {@code vocabSize} ids.
     *
     * @throws IllegalArgumentException when vocabSize is below {@link #MIN_VOCAB_SIZE}
     */
    public static void write(Path dir, int vocabSize) throws IOException {
        if (vocabSize < MIN_VOCAB_SIZE) {
            throw new IllegalArgumentException("demo vocab size " + vocabSize
                    + " is below the minimum " + MIN_VOCAB_SIZE + " (256 bytes + 5 special)");
        }
        ObjectMapper json = new ObjectMapper().disable(SerializationFeature.INDENT_OUTPUT);
        Files.createDirectories(dir);
        json.writeValue(dir.resolve("tokenizer.json").toFile(), tokenizerJson(json, vocabSize));
        json.writerWithDefaultPrettyPrinter().writeValue(
                dir.resolve("tokenizer_config.json").toFile(), configJson(json, vocabSize));
    }

    private static ObjectNode tokenizerJson(ObjectMapper json, int vocabSize) {
        List<String[]> merges = ByteLevelBpe.train(DemoCorpus.TEXT, vocabSize - MIN_VOCAB_SIZE);
        ObjectNode vocab = json.createObjectNode();
        char[] alphabet = ByteLevelBpe.byteToUnicode();
        for (int b = 0; b < 256; b++) {
            vocab.put(String.valueOf(alphabet[b]), b);
        }
        ArrayNode mergeList = json.createArrayNode();
        for (String[] m : merges) {
            vocab.put(m[0] + m[1], vocab.size());
            mergeList.add(m[0] + " " + m[1]);
        }
        int firstSpecial = vocabSize - SPECIAL_TOKENS.size();
        ArrayNode added = json.createArrayNode();
        for (int id = vocab.size(), n = 0; id < firstSpecial; id++, n++) {
            added.add(addedToken(json, id, "<|reserved_special_token_" + n + "|>"));
        }
        for (int i = 0; i < SPECIAL_TOKENS.size(); i++) {
            added.add(addedToken(json, firstSpecial + i, SPECIAL_TOKENS.get(i)));
        }

        ObjectNode root = json.createObjectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        root.set("added_tokens", added);
        root.putNull("normalizer");
        root.set("pre_tokenizer", byteLevel(json));
        root.set("post_processor", bosTemplate(json, vocabSize));
        root.set("decoder", byteLevel(json));
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        model.putNull("dropout");
        model.putNull("unk_token");
        model.putNull("continuing_subword_prefix");
        model.putNull("end_of_word_suffix");
        model.put("fuse_unk", false);
        model.put("byte_fallback", false);
        model.put("ignore_merges", false);
        model.set("vocab", vocab);
        model.set("merges", mergeList);
        return root;
    }

    private static ObjectNode addedToken(ObjectMapper json, int id, String content) {
        ObjectNode t = json.createObjectNode();
        t.put("id", id);
        t.put("content", content);
        t.put("single_word", false);
        t.put("lstrip", false);
        t.put("rstrip", false);
        t.put("normalized", false);
        t.put("special", true);
        return t;
    }

    private static ObjectNode byteLevel(ObjectMapper json) {
        ObjectNode n = json.createObjectNode();
        n.put("type", "ByteLevel");
        n.put("add_prefix_space", false);
        n.put("trim_offsets", true);
        n.put("use_regex", true);
        return n;
    }

    /** TemplateProcessing: {@code <|begin_of_text|> $A} (pairs: {@code BOS $A BOS $B}). */
    private static ObjectNode bosTemplate(ObjectMapper json, int vocabSize) {
        String bos = SPECIAL_TOKENS.get(0);
        ObjectNode p = json.createObjectNode();
        p.put("type", "TemplateProcessing");
        ArrayNode single = p.putArray("single");
        single.addObject().putObject("SpecialToken").put("id", bos).put("type_id", 0);
        single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        ArrayNode pair = p.putArray("pair");
        pair.addObject().putObject("SpecialToken").put("id", bos).put("type_id", 0);
        pair.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        pair.addObject().putObject("SpecialToken").put("id", bos).put("type_id", 1);
        pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
        ObjectNode special = p.putObject("special_tokens").putObject(bos);
        special.put("id", bos);
        special.putArray("ids").add(bosId(vocabSize));
        special.putArray("tokens").add(bos);
        return p;
    }

    private static ObjectNode configJson(ObjectMapper json, int vocabSize) {
        ObjectNode c = json.createObjectNode();
        ObjectNode decoder = c.putObject("added_tokens_decoder");
        for (String token : SPECIAL_TOKENS) {
            ObjectNode t = decoder.putObject(String.valueOf(specialTokenId(vocabSize, token)));
            t.put("content", token);
            t.put("lstrip", false);
            t.put("normalized", false);
            t.put("rstrip", false);
            t.put("single_word", false);
            t.put("special", true);
        }
        c.put("bos_token", SPECIAL_TOKENS.get(0));
        c.put("eos_token", "<|eot_id|>");
        c.put("chat_template", CHAT_TEMPLATE);
        c.put("clean_up_tokenization_spaces", true);
        ArrayNode inputs = c.putArray("model_input_names");
        inputs.add("input_ids");
        inputs.add("attention_mask");
        c.put("tokenizer_class", "PreTrainedTokenizerFast");
        return c;
    }
}
