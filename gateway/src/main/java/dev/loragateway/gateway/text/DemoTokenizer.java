package dev.loragateway.gateway.text;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The demo model's tokenizer, generated deterministically: byte-level BPE as GPT-2 / Llama 3 /
 * Qwen use it. 256 byte tokens (GPT-2's byte-to-unicode alphabet), then merges learned by a small
 * BPE trainer on an embedded English text, then {@code <|reserved_N|>} tokens up to the requested
 * size, and the Llama-3 special tokens at the top ids. The post-processor prepends
 * {@code <|begin_of_text|>}; {@code tokenizer_config.json} carries a Llama-3 chat template.
 */
public final class DemoTokenizer {
    /** Special tokens, in id order, at the top of the vocabulary. */
    public static final List<String> SPECIAL = List.of(
        "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>");
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Pattern PRETOKENIZE = Pattern.compile(
        "'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");
    private static final String CHAT_TEMPLATE = "{{- bos_token }}{%- for message in messages %}"
        + "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
        + "{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";
    private static final String CORPUS = String.join(" ",
        "The gateway serves many fine-tuned adapters on one copy of the base model.",
        "Each request names its adapter, and requests for different adapters share the same batch.",
        "A small model can still write text: the words come from the tokens it has learned, one at a time.",
        "When the model reads a prompt it computes keys and values for every token and keeps them in a cache,",
        "so that each new token only needs one more step through the layers of the network.",
        "Tenants upload their own adapters; the server checks every tensor before it accepts one,",
        "and it never shows one tenant the adapters of another. The scheduler places requests on the",
        "machines that have room, and it prefers the machines where an adapter is already loaded.",
        "Numbers such as 1, 2, 3, 10, 42, 100 and 2048 appear in logs, in metrics and in the prompts of users.",
        "Good tests compare the results with an independent reference, on random inputs, at odd shapes.",
        "It was a bright cold day in the town, and the people walked to the market to buy bread and fish.",
        "She said that the weather would change in the evening, and he answered that he would wait for the train.",
        "What is the capital of France? The capital of France is Paris. What is two plus two? It is four.",
        "Hello! How are you today? I am fine, thank you. Let us talk about models, adapters and servers.");

    private DemoTokenizer() {
    }

    /** Writes {@code tokenizer.json} and {@code tokenizer_config.json} with exactly {@code vocabSize} tokens. */
    public static void write(Path dir, int vocabSize) throws IOException {
        int minimum = 256 + SPECIAL.size();
        if (vocabSize < minimum) {
            throw new IllegalArgumentException("a byte-level tokenizer needs a vocabulary of at least " + minimum + ", got " + vocabSize);
        }
        Files.createDirectories(dir);
        String[] byteChars = byteAlphabet();
        Map<String, Integer> vocab = new LinkedHashMap<>();
        for (int b = 0; b < 256; b++) {
            vocab.put(byteChars[b], b);
        }
        int mergeBudget = vocabSize - SPECIAL.size() - 256;
        List<String> merges = train(byteChars, vocab, mergeBudget);
        int learned = vocab.size();
        ArrayNode added = JSON.createArrayNode();
        int firstSpecial = vocabSize - SPECIAL.size();
        for (int id = vocab.size(), n = 0; id < firstSpecial; id++, n++) {
            String tok = "<|reserved_" + n + "|>";
            vocab.put(tok, id);
            addedToken(added, id, tok);
        }
        for (int i = 0; i < SPECIAL.size(); i++) {
            vocab.put(SPECIAL.get(i), firstSpecial + i);
            addedToken(added, firstSpecial + i, SPECIAL.get(i));
        }
        String bos = SPECIAL.get(0);
        int bosId = firstSpecial;

        ObjectNode root = JSON.createObjectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        root.set("added_tokens", added);
        root.putNull("normalizer");
        root.putObject("pre_tokenizer").put("type", "ByteLevel").put("add_prefix_space", false)
            .put("trim_offsets", true).put("use_regex", true);
        ObjectNode post = root.putObject("post_processor").put("type", "TemplateProcessing");
        ArrayNode single = post.putArray("single");
        single.addObject().putObject("SpecialToken").put("id", bos).put("type_id", 0);
        single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        ArrayNode pair = post.putArray("pair");
        pair.addObject().putObject("SpecialToken").put("id", bos).put("type_id", 0);
        pair.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        pair.addObject().putObject("SpecialToken").put("id", bos).put("type_id", 1);
        pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
        ObjectNode st = post.putObject("special_tokens").putObject(bos);
        st.put("id", bos);
        st.putArray("ids").add(bosId);
        st.putArray("tokens").add(bos);
        root.putObject("decoder").put("type", "ByteLevel").put("add_prefix_space", true)
            .put("trim_offsets", true).put("use_regex", true);
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE").putNull("dropout").putNull("unk_token").putNull("continuing_subword_prefix")
            .putNull("end_of_word_suffix").put("fuse_unk", false).put("byte_fallback", false).put("ignore_merges", false);
        ObjectNode v = model.putObject("vocab");
        vocab.forEach((tok, id) -> {
            if (id < learned) {
                v.put(tok, id);
            }
        });
        ArrayNode m = model.putArray("merges");
        merges.forEach(m::add);
        Files.writeString(dir.resolve("tokenizer.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(root));

        ObjectNode cfg = JSON.createObjectNode();
        cfg.put("bos_token", bos);
        cfg.put("eos_token", "<|eot_id|>");
        cfg.put("chat_template", CHAT_TEMPLATE);
        cfg.put("clean_up_tokenization_spaces", true);
        cfg.put("model_max_length", 2048);
        cfg.put("tokenizer_class", "PreTrainedTokenizerFast");
        ObjectNode decoderMap = cfg.putObject("added_tokens_decoder");
        for (var t : added) {
            decoderMap.putObject(t.get("id").asText()).put("content", t.get("content").asText())
                .put("lstrip", false).put("normalized", false).put("rstrip", false).put("single_word", false).put("special", true);
        }
        Files.writeString(dir.resolve("tokenizer_config.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(cfg));
    }

    private static void addedToken(ArrayNode added, int id, String content) {
        added.addObject().put("id", id).put("content", content).put("single_word", false).put("lstrip", false)
            .put("rstrip", false).put("normalized", false).put("special", true);
    }

    /** Greedy BPE: repeatedly merge the most frequent adjacent pair (ties: the lexicographically first). */
    private static List<String> train(String[] byteChars, Map<String, Integer> vocab, int budget) {
        Map<List<String>, Integer> words = new HashMap<>();
        Matcher mt = PRETOKENIZE.matcher(CORPUS);
        while (mt.find()) {
            List<String> sym = new ArrayList<>();
            for (byte b : mt.group().getBytes(StandardCharsets.UTF_8)) {
                sym.add(byteChars[b & 0xFF]);
            }
            words.merge(sym, 1, Integer::sum);
        }
        List<List<String>> keys = new ArrayList<>(words.keySet());
        keys.sort((a, b) -> String.join("", a).compareTo(String.join("", b)));
        List<int[]> counts = new ArrayList<>();
        List<List<String>> seqs = new ArrayList<>();
        for (List<String> k : keys) {
            seqs.add(new ArrayList<>(k));
            counts.add(new int[] {words.get(k)});
        }
        List<String> merges = new ArrayList<>();
        while (vocab.size() < 256 + budget) {
            Map<String, Integer> pairs = new HashMap<>();
            for (int w = 0; w < seqs.size(); w++) {
                List<String> s = seqs.get(w);
                for (int i = 0; i + 1 < s.size(); i++) {
                    pairs.merge(s.get(i) + " " + s.get(i + 1), counts.get(w)[0], Integer::sum);
                }
            }
            String best = null;
            int bestCount = 1;
            for (var e : pairs.entrySet()) {
                if (e.getValue() > bestCount || (e.getValue() == bestCount && best != null && e.getKey().compareTo(best) < 0)) {
                    best = e.getKey();
                    bestCount = e.getValue();
                }
            }
            if (best == null) {
                break; // no pair occurs twice: the corpus is exhausted
            }
            String[] ab = best.split(" ", 2);
            String joined = ab[0] + ab[1];
            merges.add(best); // a string reached by two merge paths keeps its first id
            vocab.putIfAbsent(joined, vocab.size());
            replace(seqs, ab[0], ab[1], joined);
        }
        return merges;
    }

    private static void replace(List<List<String>> seqs, String a, String b, String joined) {
        for (List<String> s : seqs) {
            for (int i = 0; i + 1 < s.size(); i++) {
                if (s.get(i).equals(a) && s.get(i + 1).equals(b)) {
                    s.set(i, joined);
                    s.remove(i + 1);
                }
            }
        }
    }

    /** GPT-2's reversible map from bytes to printable unicode characters. */
    static String[] byteAlphabet() {
        String[] out = new String[256];
        int n = 0;
        for (int b = 0; b < 256; b++) {
            boolean printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            out[b] = printable ? String.valueOf((char) b) : String.valueOf((char) (256 + n++));
        }
        return out;
    }
}
