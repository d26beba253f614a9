package dev.loragateway.gateway.text;

import java.util.Arrays;

/**
 * Turns a stream of generated token ids into text deltas, for Server-Sent Events.
 *
 * <p>The method is vLLM's / TGI's: keep two offsets into the id list, {@code prefixOffset ≤
 * readOffset}. For each new id decode the window {@code ids[prefixOffset:readOffset]} (text already
 * emitted) and {@code ids[prefixOffset:]}; the delta is what the second has beyond the first. Then
 * slide: {@code prefixOffset = readOffset; readOffset = size}. Decoding a window that starts one
 * emitted step back (rather than the new id alone) keeps context-dependent decoders right: the
 * SentencePiece decoder strips the leading space of the first token of any decode ({@code
 * Strip(1 left)}), so {@code "▁world"} alone would decode to {@code "world"}, but after
 * {@code "▁Hello"} it gives {@code " world"}.
 *
 * <p>A character cut between byte tokens (byte-level BPE, or SentencePiece byte fallback {@code
 * <0xF0><0x9F>...}) decodes to U+FFFD until its last byte arrives; while the window's text ends in
 * U+FFFD nothing is emitted and the offsets stay, so no delta ever holds half a character. {@link
 * #flush()} emits what is still held when generation ends (then possibly with U+FFFD, exactly as
 * the full decode has it).
 *
 * <p>Worked example (SentencePiece, "héllo"): ids {@code [▁, h, <0xC3>, <0xA9>, llo]} give
 * deltas {@code ""} (a lone leading space is stripped), {@code "h"}, {@code ""} (window text
 * "h\uFFFD" held back), {@code "é"}, {@code "llo"}.
 *
 * <p>Invariant, pinned by tests: {@code concat(deltas) + flush() == tokenizer.decode(ids,
 * skipSpecialTokens)} when constructed without context. With context ids (e.g. the prompt's last
 * few tokens, as vLLM does so that the first generated {@code "▁word"} keeps its space) the
 * deltas are the text that the generated ids add after the context.
 *
 * <p>Not thread-safe: one instance per generated sequence. Cost per token: two decodes of a
 * window of a few ids.
 */
public final class IncrementalDetokenizer {

    private static final char REPLACEMENT = '\uFFFD';

    private final TextTokenizer tokenizer;
    private final boolean skipSpecialTokens;
    private final int contextLength;
    private int[] ids;
    private int size;
    private int prefixOffset;
    private int readOffset;

    /** A detokenizer starting with no context: deltas concatenate to {@code decode(ids)}. */
    public IncrementalDetokenizer(TextTokenizer tokenizer, boolean skipSpecialTokens) {
        this(tokenizer, new int[0], skipSpecialTokens);
    }

    /**
     * A detokenizer whose first window starts with {@code contextIds} (not emitted), e.g. the last
     * 5 prompt tokens, so that the first generated token is decoded as it reads after the prompt.
     */
    public IncrementalDetokenizer(
            TextTokenizer tokenizer, int[] contextIds, boolean skipSpecialTokens) {
        this.tokenizer = tokenizer;
        this.skipSpecialTokens = skipSpecialTokens;
        this.ids = Arrays.copyOf(contextIds, Math.max(16, contextIds.length * 2));
        this.size = contextIds.length;
        this.contextLength = contextIds.length;
        this.prefixOffset = 0;
        this.readOffset = contextIds.length;
    }

    /**
     * Adds one generated id and returns the text it completes: possibly empty (a partial UTF-8
     * character held back, or a skipped special token), never containing half a character.
     */
    public String next(int id) {
        if (size == ids.length) {
            ids = Arrays.copyOf(ids, size * 2);
        }
        ids[size++] = id;
        String prefixText = decode(prefixOffset, readOffset);
        String newText = decode(prefixOffset, size);
        if (newText.length() > prefixText.length()
                && newText.charAt(newText.length() - 1) != REPLACEMENT) {
            String delta = suffix(newText, prefixText);
            prefixOffset = readOffset;
            readOffset = size;
            return delta;
        }
        return "";
    }

    /** Adds several ids; returns the concatenated deltas. */
    public String next(int[] newIds) {
        StringBuilder sb = new StringBuilder();
        for (int id : newIds) {
            sb.append(next(id));
        }
        return sb.toString();
    }

    /**
     * Emits whatever is still held back (an incomplete character at the end of generation decodes
     * to U+FFFD here, as in the full decode) and resets the window to start after it.
     */
    public String flush() {
        if (readOffset == size) {
            return "";
        }
        String prefixText = decode(prefixOffset, readOffset);
        String newText = decode(prefixOffset, size);
        prefixOffset = readOffset;
        readOffset = size;
        return newText.length() > prefixText.length() ? suffix(newText, prefixText) : "";
    }

    /** Ids fed so far (without context ids). */
    public int generatedCount() {
        return size - contextLength;
    }

    private String decode(int from, int to) {
        if (from == to) {
            return "";
        }
        return tokenizer.decode(Arrays.copyOfRange(ids, from, to), skipSpecialTokens);
    }

    /**
     * newText beyond prefixText. Decoders used by Llama/Mistral/Qwen tokenizers are concatenative
     * past the first token, so prefixText is a prefix of newText; vLLM takes the suffix by length
     * in any case and so do we.
     */
    private static String suffix(String newText, String prefixText) {
        return newText.substring(prefixText.length());
    }
}
