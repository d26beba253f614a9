package dev.loragateway.gateway.text;

import dev.loragateway.gateway.demo.DemoTokenizer;


import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DemoTokenizerTest {

    @Test
    void loadsRoundTripsAndAddsBosForEverySize(@TempDir Path root) throws IOException {
        for (int size : new int[] {261, 300, 512, 2048, 32000}) {
            Path dir = root.resolve("v" + size);
            DemoTokenizer.write(dir, size);
            try (TextTokenizer t = TextTokenizer.load(dir)) {
                assertEquals(size, t.vocabSize(), "vocab size");
                int bos = DemoTokenizer.bosId(size);
                assertEquals(size - 5, bos);
                assertEquals(size - 1, DemoTokenizer.eosId(size));
                for (int i = 0; i < 5; i++) {
                    String special = DemoTokenizer.SPECIAL_TOKENS.get(i);
                    assertEquals(OptionalInt.of(size - 5 + i), t.tokenId(special), special);
                    assertTrue(t.isSpecial(size - 5 + i));
                }
                assertEquals(Optional.of("<|begin_of_text|>"), t.bosToken());
                assertEquals(Optional.of("<|eot_id|>"), t.eosToken());
                for (String s : TextTokenizerTest.SAMPLES) {
                    int[] ids = t.encode(s, true);
                    assertEquals(bos, ids[0], "BOS first");
                    assertEquals(s, t.decode(ids, true), s);
                    for (int id : ids) {
                        assertTrue(id >= 0 && id < size);
                    }
                }
            }
        }
    }

    @Test
    void aLearnedMergeFires(@TempDir Path dir) throws IOException {
        DemoTokenizer.write(dir, 1024);
        try (TextTokenizer t = TextTokenizer.load(dir)) {
            for (String word : List.of(" the", " model", " request", " adapter", "Hello")) {
                int[] ids = t.encode(word, false);
                assertEquals(1, ids.length, word + " -> " + java.util.Arrays.toString(ids));
                assertTrue(ids[0] >= 256 && ids[0] < 1024 - 5, "a merged token");
            }
            String sentence = "The server answers the request with the model and the adapter.";
            int[] ids = t.encode(sentence, false);
            assertTrue(ids.length * 3 < sentence.length(), ids.length + " tokens");
            assertEquals(sentence, t.decode(ids));
        }
    }

    @Test
    void tinyVocabularyIsBytesOnly(@TempDir Path dir) throws IOException {
        DemoTokenizer.write(dir, DemoTokenizer.MIN_VOCAB_SIZE);
        try (TextTokenizer t = TextTokenizer.load(dir)) {
            assertArrayEquals(new int[] {'a', ' ', 'b'}, t.encode("a b", false));
        }
    }

    @Test
    void isDeterministic(@TempDir Path dir) throws IOException {
        DemoTokenizer.write(dir.resolve("a"), 4096);
        DemoTokenizer.write(dir.resolve("b"), 4096);
        for (String f : List.of("tokenizer.json", "tokenizer_config.json")) {
            assertEquals(Files.readString(dir.resolve("a").resolve(f)),
                    Files.readString(dir.resolve("b").resolve(f)), f);
        }
    }

    @Test
    void chatTemplateRendersLlama3Format(@TempDir Path dir) throws IOException {
        DemoTokenizer.write(dir, 512);
        try (TextTokenizer t = TextTokenizer.load(dir)) {
            String prompt = ChatTemplate.of(t).orElseThrow().render(
                    List.of(java.util.Map.of("role", "user", "content", "Hi")), true);
            assertEquals("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                    + "<|start_header_id|>assistant<|end_header_id|>\n\n", prompt);
            int[] ids = t.encode(prompt, false);
            assertEquals(DemoTokenizer.bosId(512), ids[0]);
            assertEquals(DemoTokenizer.specialTokenId(512, "<|start_header_id|>"), ids[1]);
        }
    }

    @Test
    void rejectsTooSmallVocabulary(@TempDir Path dir) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> DemoTokenizer.write(dir, 260));
        assertTrue(e.getMessage().contains("260") && e.getMessage().contains("261"));
    }
}
