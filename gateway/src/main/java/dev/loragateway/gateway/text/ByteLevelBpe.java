package dev.loragateway.gateway.text;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A tiny byte-level BPE trainer (GPT-2 style), enough to give the demo model a real tokenizer.
 *
 * <p>Text is split by the GPT-2 pre-tokenizer regex (the one Hugging Face's {@code ByteLevel}
 * pre-tokenizer applies with {@code use_regex: true}), each piece's UTF-8 bytes are written in the
 * GPT-2 byte-to-unicode alphabet (printable bytes as themselves, the rest shifted to U+0100.., so
 * space is {@code Ġ}), then the most frequent adjacent pair is merged, again and again.
 *
 * <p>Determinism: pairs are counted exactly and ties are broken by the pair's text (smallest
 * first), so the same corpus always gives the same merges. Cost: one pass over the distinct words
 * per merge, fine for a few KB of corpus.
 */
public final class ByteLevelBpe {

    /** GPT-2's pre-tokenizer pattern, as in tokenizers' ByteLevel. */
    static final Pattern GPT2_SPLIT = Pattern.compile(
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");

    private ByteLevelBpe() {}

    /** GPT-2's bytes_to_unicode: the character each byte value is written as. */
    public static char[] byteToUnicode() {
        char[] map = new char[256];
        boolean[] printable = new boolean[256];
        for (int b = 0; b < 256; b++) {
            printable[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        }
        int next = 256;
        for (int b = 0; b < 256; b++) {
            map[b] = printable[b] ? (char) b : (char) next++;
        }
        return map;
    }

    /** The pre-tokenized pieces of text, each written in the byte-level alphabet. */
    static List<String> pieces(String text) {
        char[] alphabet = byteToUnicode();
        List<String> out = new ArrayList<>();
        Matcher m = GPT2_SPLIT.matcher(text);
        while (m.find()) {
            StringBuilder sb = new StringBuilder();
            for (byte b : m.group().getBytes(StandardCharsets.UTF_8)) {
                sb.append(alphabet[b & 0xFF]);
            }
            out.add(sb.toString());
        }
        return out;
    }

    /**
     * Learns up to {@code maxMerges} merges from {@code corpus}; stops early when every word of
     * the corpus is a single token. Frequent pairs come first; once no pair occurs twice, the
     * remaining merges (count 1) complete whole words. Each merge is {@code {left, right}}; its
     * token is {@code left + right}.
     */
    public static List<String[]> train(String corpus, int maxMerges) {
        Map<List<String>, Integer> words = new HashMap<>(); // symbols of a word -> count
        for (String piece : pieces(corpus)) {
            List<String> symbols = new ArrayList<>();
            piece.codePoints().forEach(cp -> symbols.add(new String(Character.toChars(cp))));
            words.merge(symbols, 1, Integer::sum);
        }
        List<String[]> merges = new ArrayList<>();
        while (merges.size() < maxMerges) {
            Map<String, Integer> pairs = new HashMap<>(); // "left right" -> occurrences
            for (Map.Entry<List<String>, Integer> w : words.entrySet()) {
                List<String> s = w.getKey();
                for (int i = 0; i + 1 < s.size(); i++) {
                    pairs.merge(s.get(i) + ' ' + s.get(i + 1), w.getValue(), Integer::sum);
                }
            }
            String best = null;
            int bestCount = 0;
            for (Map.Entry<String, Integer> p : pairs.entrySet()) { // ties: smallest text wins
                int c = p.getValue();
                if (c > bestCount || (c == bestCount && p.getKey().compareTo(best) < 0)) {
                    best = p.getKey();
                    bestCount = c;
                }
            }
            if (best == null) {
                break;
            }
            String[] pair = best.split(" ", 2);
            merges.add(pair);
            Map<List<String>, Integer> merged = new HashMap<>();
            for (Map.Entry<List<String>, Integer> w : words.entrySet()) {
                merged.merge(apply(w.getKey(), pair[0], pair[1]), w.getValue(), Integer::sum);
            }
            words = merged;
        }
        return merges;
    }

    private static List<String> apply(List<String> symbols, String left, String right) {
        List<String> out = new ArrayList<>(symbols.size());
        for (int i = 0; i < symbols.size(); i++) {
            if (i + 1 < symbols.size() && symbols.get(i).equals(left)
                    && symbols.get(i + 1).equals(right)) {
                out.add(left + right);
                i++;
            } else {
                out.add(symbols.get(i));
            }
        }
        return out;
    }
}
