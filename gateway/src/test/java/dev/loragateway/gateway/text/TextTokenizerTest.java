package dev.loragateway.gateway.text;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The two fixtures (see {@code make_fixtures.py}): a Llama-3-style byte-level BPE and a
 * Llama-2-style SentencePiece BPE with byte fallback. Expected ids are the script's own reference
 * BPE; DJL (the Rust tokenizers library) must agree with it.
 */
class TextTokenizerTest {

    static final List<String> SAMPLES = List.of(
            "Hello world",
            "héllo 世界 🙂",
            "line one\nline two\n\n\ttabbed",
            " two  leading and trailing spaces  ",
            "Ünïcödé: naïve café, Ελληνικά, русский, 日本語, 한국어, עברית, 🤖👍🏽",
            "numbers 1234567 and punctuation!?.,;:'\"()[]{}",
            "");

    static TextTokenizer byteLevel;
    static TextTokenizer spm;

    static Path fixture(String name) {
        try {
            return Path.of(TextTokenizerTest.class.getResource("/text/" + name).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    @BeforeAll
    static void load() throws IOException {
        byteLevel = TextTokenizer.load(fixture("bytelevel"));
        spm = TextTokenizer.load(fixture("spm"));
    }

    @AfterAll
    static void close() {
        byteLevel.close();
        spm.close();
    }

    @Test
    void byteLevelSplitsAsTheReferenceBpe() {
        assertArrayEquals(new int[] {325, 292, 289}, byteLevel.encode("Hello world", true));
        assertEquals(Optional.of("Hello"), byteLevel.token(292));
        assertEquals(Optional.of("Ġworld"), byteLevel.token(289));
        assertArrayEquals(new int[] {116, 257, 311, 270, 320, 276, 259, 283, 270},
                byteLevel.encode("the cat sat on the mat", false));
        assertArrayEquals(new int[] {116, 268, 307}, byteLevel.encode("tokenizer", false));
        assertArrayEquals(new int[] {257, 279, 44, 288, 108, 112},
                byteLevel.encode("hello, help", false));
    }

    @Test
    void sentencePieceSplitsAsTheReferenceBpe() {
        assertArrayEquals(new int[] {1, 349, 328}, spm.encode("Hello world", true));
        assertEquals(Optional.of("▁world"), spm.token(328));
        assertArrayEquals(new int[] {297, 350, 309, 360, 315, 297, 322, 309},
                spm.encode("the cat sat on the mat", false));
        assertArrayEquals(new int[] {362}, spm.encode("tokenizer", false));
        assertArrayEquals(new int[] {353, 321, 278, 282}, spm.encode("hello, help", false));
    }

    @Test
    void sentencePieceFallsBackToByteTokens() {
        int space = spm.tokenId("▁").getAsInt();
        int h = spm.tokenId("h").getAsInt();
        int llo = spm.tokenId("llo").getAsInt();
        // <0xNN> tokens sit at ids 3..258, as in Llama 2
        assertEquals(OptionalInt.of(3 + 0xC3), spm.tokenId("<0xC3>"));
        assertArrayEquals(new int[] {space, h, 3 + 0xC3, 3 + 0xA9, llo},
                spm.encode("héllo", false));
        assertArrayEquals(new int[] {space, 3 + 0xF0, 3 + 0x9F, 3 + 0x99, 3 + 0x82},
                spm.encode("🙂", false));
        int[] newline = spm.encode("a\n", false); // no piece for a newline: <0x0A>
        assertEquals(3 + 0x0A, newline[newline.length - 1]);
    }

    @Test
    void roundTripsArbitraryText() {
        for (TextTokenizer t : List.of(byteLevel, spm)) {
            for (String s : SAMPLES) {
                assertEquals(s, t.decode(t.encode(s, false)), s);
                assertEquals(s, t.decode(t.encode(s, true), true), s);
            }
        }
    }

    @Test
    void addsBosAsThePostProcessorSays() {
        assertEquals(325, byteLevel.encode("x", true)[0]);
        assertEquals(OptionalInt.of(325), byteLevel.tokenId("<|begin_of_text|>"));
        assertFalse(Arrays.stream(byteLevel.encode("x", false)).anyMatch(id -> id == 325));
        assertEquals(1, spm.encode("x", true)[0]);
        assertArrayEquals(new int[] {325}, byteLevel.encode("", true));
        assertArrayEquals(new int[0], byteLevel.encode("", false));
    }

    @Test
    void decodeKeepsOrSkipsSpecialTokens() {
        int[] ids = spm.encode("Hello world", true);
        assertEquals("<s> Hello world", spm.decode(ids)); // as transformers' Llama 2 tokenizer
        assertEquals("Hello world", spm.decode(ids, true));
        int[] bl = byteLevel.encode("Hi<|eot_id|>", true);
        assertEquals("<|begin_of_text|>Hi<|eot_id|>", byteLevel.decode(bl));
        assertEquals("Hi", byteLevel.decode(bl, true));
    }

    @Test
    void specialTokensWrittenInTextAreRecognised() {
        int eot = byteLevel.tokenId("<|eot_id|>").getAsInt();
        assertArrayEquals(new int[] {eot}, byteLevel.encode("<|eot_id|>", false));
        assertTrue(byteLevel.isSpecial(eot));
        assertFalse(byteLevel.isSpecial(292));
    }

    @Test
    void neverTruncates() {
        String longText = "the cat sat on the mat and ".repeat(400); // ~3600 tokens > DJL's 512
        int[] ids = byteLevel.encode(longText, true);
        assertTrue(ids.length > 3000, "got " + ids.length);
        assertEquals(longText, byteLevel.decode(ids, true));
    }

    @Test
    void reportsVocabularyAndConfig() {
        assertEquals(330, byteLevel.vocabSize());
        assertEquals(365, spm.vocabSize());
        assertEquals(Optional.of("<|begin_of_text|>"), byteLevel.bosToken());
        assertEquals(Optional.of("<|eot_id|>"), byteLevel.eosToken());
        assertEquals(Optional.of("<s>"), spm.bosToken()); // an AddedToken object in the config
        assertEquals(Optional.of("</s>"), spm.eosToken());
        assertTrue(byteLevel.chatTemplate().orElseThrow().startsWith("{% set loop_messages"));
        // a list of named templates: "default" is chosen
        assertTrue(spm.chatTemplate().orElseThrow().contains("<<SYS>>"));
        assertEquals(OptionalInt.empty(), spm.tokenId("no-such-token"));
    }

    @Test
    void rejectsIdsOutsideTheVocabulary() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> spm.decode(new int[] {1, 365}));
        assertTrue(e.getMessage().contains("365"), e.getMessage());
    }

    @Test
    void readsChatTemplateJinjaAndToleratesMissingConfig(@TempDir Path dir) throws IOException {
        Files.copy(fixture("bytelevel").resolve("tokenizer.json"), dir.resolve("tokenizer.json"));
        try (TextTokenizer t = TextTokenizer.load(dir)) {
            assertEquals(Optional.empty(), t.chatTemplate());
            assertEquals(Optional.empty(), t.bosToken());
            assertEquals(325, t.encode("x", true)[0]); // BOS still from tokenizer.json
        }
        Files.writeString(dir.resolve("chat_template.jinja"), "{{ messages[0].content }}");
        try (TextTokenizer t = TextTokenizer.load(dir)) {
            assertEquals(Optional.of("{{ messages[0].content }}"), t.chatTemplate());
        }
    }

    @Test
    void missingTokenizerJsonIsAnIoError(@TempDir Path dir) {
        IOException e = assertThrows(IOException.class, () -> TextTokenizer.load(dir));
        assertTrue(e.getMessage().contains("tokenizer.json"), e.getMessage());
    }
}
