package dev.loragateway.gateway.text;

import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The bytes of one token's text, as OpenAI's {@code logprobs.content[].bytes} reports them: a token
 * may hold part of a UTF-8 character (byte-level BPE writes "日" as three byte tokens), and then its
 * decoded text is U+FFFD while its bytes are the real ones, so that a client can join them.
 *
 * <ul>
 *   <li>a token that decodes to whole characters: the UTF-8 of that text;
 *   <li>SentencePiece's byte fallback {@code <0xE6>}: that byte;
 *   <li>a byte-level BPE token (every char in GPT-2's byte alphabet, e.g. {@code "æĹ"}): the bytes
 *       the alphabet stands for;
 *   <li>anything else: the UTF-8 of the decoded text.
 * </ul>
 */
public final class TokenBytes {
    private static final Pattern BYTE_FALLBACK = Pattern.compile("<0x([0-9A-Fa-f]{2})>");
    private static final int[] UNICODE_TO_BYTE = inverse(ByteLevelBpe.byteToUnicode());

    private TokenBytes() {
    }

    /** The bytes of token {@code id} whose decoded text is {@code text}. */
    public static byte[] of(TextTokenizer tokenizer, int id, String text) {
        if (text.indexOf('\uFFFD') < 0 || tokenizer.isSpecial(id)) {
            return text.getBytes(StandardCharsets.UTF_8);
        }
        String raw = tokenizer.token(id).orElse(null);
        if (raw == null) {
            return text.getBytes(StandardCharsets.UTF_8);
        }
        Matcher m = BYTE_FALLBACK.matcher(raw);
        if (m.matches()) {
            return new byte[] {(byte) Integer.parseInt(m.group(1), 16)};
        }
        byte[] out = new byte[raw.length()];
        for (int i = 0; i < raw.length(); i++) {
            char c = raw.charAt(i);
            if (c >= UNICODE_TO_BYTE.length || UNICODE_TO_BYTE[c] < 0) {
                return text.getBytes(StandardCharsets.UTF_8);
            }
            out[i] = (byte) UNICODE_TO_BYTE[c];
        }
        return out;
    }

    private static int[] inverse(char[] byteToUnicode) {
        int max = 0;
        for (char c : byteToUnicode) {
            max = Math.max(max, c);
        }
        int[] inv = new int[max + 1];
        java.util.Arrays.fill(inv, -1);
        for (int b = 0; b < byteToUnicode.length; b++) {
            inv[byteToUnicode[b]] = b;
        }
        return inv;
    }
}
