package dev.loragateway.gateway.text;

import dev.loragateway.gateway.demo.DemoTokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenBytesTest {

    /** The demo vocabulary has no token for a non-ASCII character: each of its bytes is a token that decodes to U+FFFD. */
    @Test
    void bytesOfEveryTokenJoinToTheTextsUtf8(@TempDir Path dir) throws IOException {
        DemoTokenizer.write(dir, 512);
        try (TextTokenizer t = TextTokenizer.load(dir)) {
            for (String s : new String[] {"plain ascii words", "h\u00e9llo w\u00f6rld", "\u65e5\u672c\u8a9e \ud83d\ude42!",
                "<|begin_of_text|>mixed \u00e9 <|eot_id|>"}) {
                int[] ids = t.encode(s, false);
                ByteArrayOutputStream joined = new ByteArrayOutputStream();
                boolean partial = false;
                for (int id : ids) {
                    String text = t.decode(new int[] {id}, false);
                    partial |= text.indexOf('\uFFFD') >= 0;
                    joined.writeBytes(TokenBytes.of(t, id, text));
                }
                assertArrayEquals(s.getBytes(StandardCharsets.UTF_8), joined.toByteArray(), s);
                if (!s.chars().allMatch(c -> c < 128)) {
                    assertTrue(partial, "'" + s + "' has tokens holding part of a character");
                }
            }
        }
    }
}
