package dev.loragateway.gateway.text;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class IncrementalDetokenizerTest {

    /** Pieces random texts are made of: ASCII words, accents, CJK, emoji (4-byte, ZWJ, skin). */
    private static final String[] PIECES = {
        "the", " cat", " sat", "Hello", " world", ",", ".", " ", "  ", "\n", "\t", "é", "ü", "ñ",
        "café", " naïve", "世界", "日本語", "한국어", "🙂", "🤖", "👍🏽", "👩‍💻", "Ω", "€", "\u00a0",
        "tokenizer", " help", "\u0301", "a", "Z", "42", "<", ">", "{", "}", "▁"
    };

    static TextTokenizer byteLevel;
    static TextTokenizer spm;

    @BeforeAll
    static void load() throws IOException {
        byteLevel = TextTokenizer.load(TextTokenizerTest.fixture("bytelevel"));
        spm = TextTokenizer.load(TextTokenizerTest.fixture("spm"));
    }

    @AfterAll
    static void close() {
        byteLevel.close();
        spm.close();
    }

    private static String randomText(Random random) {
        StringBuilder sb = new StringBuilder();
        int n = 1 + random.nextInt(25);
        for (int i = 0; i < n; i++) {
            sb.append(PIECES[random.nextInt(PIECES.length)]);
        }
        return sb.toString();
    }

    /** Streams ids one by one; checks no delta holds U+FFFD and that deltas add up. */
    private static List<String> stream(TextTokenizer t, int[] ids, boolean skipSpecial) {
        IncrementalDetokenizer detok = new IncrementalDetokenizer(t, skipSpecial);
        List<String> deltas = new ArrayList<>();
        for (int id : ids) {
            deltas.add(detok.next(id));
        }
        deltas.add(detok.flush());
        String joined = String.join("", deltas);
        assertEquals(t.decode(ids, skipSpecial), joined, "ids " + java.util.Arrays.toString(ids));
        return deltas;
    }

    @Test
    void randomTextsStreamToTheFullDecodeWithoutBrokenCharacters() {
        Random random = new Random(20240726);
        for (TextTokenizer t : List.of(byteLevel, spm)) {
            for (int trial = 0; trial < 300; trial++) {
                String text = randomText(random);
                int[] ids = t.encode(text, random.nextBoolean());
                for (boolean skip : new boolean[] {false, true}) {
                    for (String delta : stream(t, ids, skip)) {
                        assertFalse(delta.indexOf('\uFFFD') >= 0,
                                "delta " + delta + " of " + text);
                    }
                }
                if (t == byteLevel || !text.contains("▁")) { // SentencePiece reads ▁ as a space
                    assertEquals(text, String.join("", stream(t, t.encode(text, false), true)));
                }
            }
        }
    }

    @Test
    void holdsBackACharacterSplitAcrossByteTokens() {
        // SentencePiece byte fallback: é = <0xC3><0xA9>
        int[] ids = spm.encode("héllo", false); // [▁, h, <0xC3>, <0xA9>, llo]
        IncrementalDetokenizer d = new IncrementalDetokenizer(spm, true);
        List<String> deltas = IntStream.of(ids).mapToObj(d::next).toList();
        assertEquals(List.of("", "h", "", "é", "llo"), deltas);
        // byte-level BPE: 🙂 = four byte tokens
        int[] emoji = byteLevel.encode("a🙂b", false);
        IncrementalDetokenizer b = new IncrementalDetokenizer(byteLevel, true);
        List<String> bDeltas = IntStream.of(emoji).mapToObj(b::next).toList();
        assertEquals(List.of("a", "", "", "", "🙂", "b"), bDeltas);
    }

    @Test
    void keepsSentencePieceLeadingSpacesBetweenWords() {
        int[] ids = spm.encode("the cat sat", false); // ▁the ▁c at ▁sat
        IncrementalDetokenizer d = new IncrementalDetokenizer(spm, false);
        List<String> deltas = IntStream.of(ids).mapToObj(d::next).toList();
        assertEquals(List.of("the", " c", "at", " sat"), deltas);
    }

    @Test
    void contextIdsGiveTheFirstGeneratedTokenItsSpace() {
        int[] prompt = spm.encode("Hello", true);
        int world = spm.tokenId("▁world").getAsInt();
        assertEquals("world", new IncrementalDetokenizer(spm, true).next(world));
        IncrementalDetokenizer d = new IncrementalDetokenizer(spm, prompt, true);
        assertEquals(" world", d.next(world));
        assertEquals(1, d.generatedCount());
    }

    @Test
    void flushEmitsAnUnfinishedCharacterAsTheFullDecodeDoes() {
        int[] partial = {3 + 0xF0, 3 + 0x9F}; // first two bytes of an emoji
        IncrementalDetokenizer d = new IncrementalDetokenizer(spm, true);
        assertEquals("", d.next(partial[0]));
        assertEquals("", d.next(partial[1]));
        assertEquals(spm.decode(partial, true), d.flush());
        assertEquals("", d.flush());
    }

    @Test
    void skippedSpecialTokensEmitNothing() {
        int eot = byteLevel.tokenId("<|eot_id|>").getAsInt();
        IncrementalDetokenizer d = new IncrementalDetokenizer(byteLevel, true);
        assertEquals("Hello", d.next(292));
        assertEquals("", d.next(eot));
        assertEquals(" world", d.next(289));
        IncrementalDetokenizer keep = new IncrementalDetokenizer(byteLevel, false);
        assertEquals("Hello", keep.next(292));
        assertEquals("<|eot_id|>", keep.next(eot));
    }
}
