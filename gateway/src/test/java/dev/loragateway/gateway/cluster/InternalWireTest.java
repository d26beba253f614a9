package dev.loragateway.gateway.cluster;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterLoadException;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.InferenceExecutor;
import dev.loragateway.batcher.Sampler;
import dev.loragateway.batcher.SamplingParams;
import dev.loragateway.gateway.http.ApiError;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The internal protocol's encodings, each read back: what one end writes the other must read exactly. */
class InternalWireTest {

    @Test
    void logprobsCrossTheWireBitForBit() throws Exception {
        Random rnd = new Random(7);
        float[] special = {Float.NEGATIVE_INFINITY, Float.NaN, -Float.MIN_VALUE, -0f, -1e-30f, -Float.MAX_VALUE};
        for (int i = 0; i < 2000; i++) {
            float l = i < special.length ? special[i] : -Math.abs(Float.intBitsToFloat(rnd.nextInt()) % 100f) - rnd.nextFloat();
            float[] top = {l, -rnd.nextFloat() * 30, Float.intBitsToFloat(0xbf800001 + rnd.nextInt(1 << 20))};
            Sampler.Logprobs lp = new Sampler.Logprobs(i, l, new int[] {i, 3, 9}, top);
            JsonNode line = InternalWire.MAPPER.readTree(InternalWire.tokenLine(2, i, lp));
            assertEquals(2, line.get("c").intValue());
            assertEquals(i, line.get("t").intValue());
            Sampler.Logprobs back = InternalWire.logprobs(i, line.get("lp"));
            assertEquals(Float.floatToIntBits(l), Float.floatToIntBits(back.logprob()), "logprob " + l);
            assertArrayEquals(new int[] {i, 3, 9}, back.topTokens());
            for (int k = 0; k < top.length; k++) {
                assertEquals(Float.floatToIntBits(top[k]), Float.floatToIntBits(back.topLogprobs()[k]), "top " + top[k]);
            }
        }
        assertNull(InternalWire.logprobs(1, InternalWire.MAPPER.readTree(InternalWire.tokenLine(0, 1, null)).get("lp")));
    }

    @Test
    void samplingControlsCrossTheWireExactly() throws Exception {
        var controls = new SamplingParams.Controls(new int[] {7, 0, 4095}, new float[] {0.1f, -99.99999f, Float.MIN_VALUE},
            -1.9999999999999998, 0.30000000000000004, 1.0000001, 40, 0.05000000000000001, 3, true, new int[] {9, 2}, 5);
        SamplingParams p = new SamplingParams(0.9, 0.95, 42, 60, -1, controls);
        var work = new InferenceExecutor.Work("req-1", "acme", null, List.of(
            new InferenceExecutor.Prompt(new int[] {1, 2}, List.of(new InferenceExecutor.Choice(p, (t, l) -> true),
                new InferenceExecutor.Choice(SamplingParams.greedy(3), (t, l) -> true)))), null);
        JsonNode body = InternalWire.MAPPER.readTree(InternalWire.request("s1", work).toString());
        JsonNode choices = body.get("prompts").get(0).get("choices");
        assertEquals(p, InternalWire.params(choices.get(0)));
        assertFalse(choices.get(1).has("controls"), "a choice without controls sends none");
        assertEquals(SamplingParams.greedy(3), InternalWire.params(choices.get(1)));
        // a malformed or out-of-range controls object is refused, not run without it
        var bad = (com.fasterxml.jackson.databind.node.ObjectNode) choices.get(0).deepCopy();
        ((com.fasterxml.jackson.databind.node.ObjectNode) bad.get("controls")).put("minP", 3);
        assertThrows(IllegalArgumentException.class, () -> InternalWire.params(bad));
        ((com.fasterxml.jackson.databind.node.ObjectNode) bad.get("controls")).remove("minP");
        assertThrows(IllegalArgumentException.class, () -> InternalWire.params(bad));
    }

    @Test
    void aRequestReadsBackAsItWasSent() throws Exception {
        SamplingParams p = new SamplingParams(0.7000000000000001, 0.93, Long.MIN_VALUE + 3, 77, 4);
        var work = new InferenceExecutor.Work("req-9", "acme", AdapterKey.of("acme", "bot"), List.of(
            new InferenceExecutor.Prompt(new int[] {1, 2, 3}, List.of(new InferenceExecutor.Choice(p, (t, l) -> true)))), null);
        JsonNode body = InternalWire.MAPPER.readTree(InternalWire.request("s1", work).toString());
        assertEquals(AdapterKey.of("acme", "bot"), InternalWire.adapter(body));
        assertEquals(p, InternalWire.params(body.get("prompts").get(0).get("choices").get(0)));
        assertArrayEquals(new int[] {1, 2, 3}, InternalWire.tokens(body.get("prompts").get(0)));
        var system = new InferenceExecutor.Work("r", "acme", AdapterKey.system("bot"), work.prompts(), null);
        assertEquals(AdapterKey.system("bot"), InternalWire.adapter(InternalWire.MAPPER.readTree(InternalWire.request("s", system).toString())));
        var base = new InferenceExecutor.Work("r", "acme", null, work.prompts(), null);
        assertNull(InternalWire.adapter(InternalWire.MAPPER.readTree(InternalWire.request("s", base).toString())));
    }

    @Test
    void errorsComeBackAsTheExceptionsALocalEngineThrows() {
        assertRoundTrip(new Engine.QueueFullException(5, 2, 6), 429);
        assertRoundTrip(new Engine.RequestTooLargeException(9, 3, 3, 8), 400);
        assertRoundTrip(new Engine.RequestTooLargeException(4, 1, 4, 2), 400);
        assertRoundTrip(new IllegalArgumentException("token id 999 is outside the vocabulary (size 512)"), 400);
        assertRoundTrip(new Engine.UnavailableException("the engine is shutting down"), 503);
        assertRoundTrip(new AdapterLoadException("adapter acme/bot failed to load", null), 503);
        RuntimeException internal = InternalWire.exception(500, InternalWire.error(new IllegalStateException("boom"), "r").get("error"));
        assertInstanceOf(ApiError.class, internal);
        assertEquals(500, ((ApiError) internal).status());
        assertFalse(internal.getMessage().contains("boom"), "an internal fault's text stays on its node");
    }

    private static void assertRoundTrip(RuntimeException e, int status) {
        assertEquals(status, InternalWire.status(e));
        RuntimeException back = InternalWire.exception(status, InternalWire.error(e, "r").get("error"));
        assertEquals(e.getClass(), back.getClass());
        assertEquals(e.getMessage(), back.getMessage());
    }

    @Test
    void theTokenProvesTheSecretAndNothingElse() {
        byte[] s = "s3cret".getBytes(StandardCharsets.UTF_8);
        String t = InternalWire.token(s);
        assertEquals(64, t.length());
        assertTrue(InternalWire.tokenMatches(t, InternalWire.token(s.clone())));
        assertFalse(InternalWire.tokenMatches(t, InternalWire.token("s3cres".getBytes(StandardCharsets.UTF_8))));
        assertFalse(InternalWire.tokenMatches(t, null));
        assertFalse(InternalWire.tokenMatches(t, t.substring(1)));
        assertFalse(t.contains(java.util.HexFormat.of().formatHex(s)), "the token is not the secret");
    }
}
