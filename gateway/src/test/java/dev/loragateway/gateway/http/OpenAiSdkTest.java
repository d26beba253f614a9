package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.openai.client.OpenAIClient;
import com.openai.core.JsonValue;
import com.openai.core.http.StreamResponse;
import com.openai.errors.BadRequestException;
import com.openai.errors.NotFoundException;
import com.openai.errors.OpenAIServiceException;
import com.openai.errors.UnauthorizedException;
import com.openai.models.chat.completions.ChatCompletionStreamOptions;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionChoice;
import com.openai.models.completions.CompletionCreateParams;
import com.openai.models.completions.CompletionUsage;
import com.openai.models.models.Model;
import dev.loragateway.gateway.demo.DemoAdapters;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/**
 * The official OpenAI Java SDK against a real server on the demo model: legacy completions plain
 * and streamed, logprobs, {@code n}, stop strings, an adapter chosen by {@code model} (checked
 * against a server of the adapter's merged-weights twin), {@code /v1/models}, and errors surfacing
 * as the SDK's exception types with the server's status, type, param and code.
 *
 * <p>Every SDK answer is {@code validate()}d: the SDK's own schema check, so a field of the wrong
 * type or a missing required field fails here as it would for a user of the SDK.
 */
class OpenAiSdkTest extends SdkTestBase {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String PROMPT = "The gateway serves adapters to";
    private static final String ADAPTER = SdkServers.ADAPTER;
    private static final int MAX_LEN = SdkServers.MAX_LEN;

    static CompletionCreateParams.Builder params(String model, String prompt, long maxTokens) {
        return CompletionCreateParams.builder().model(model).prompt(prompt).maxTokens(maxTokens);
    }

    static CompletionCreateParams greedy(String model, long maxTokens) {
        return params(model, PROMPT, maxTokens).temperature(0.0).build();
    }

    /**
     * A stream read to its end: chunks in order. (Not {@code validate()}d: the SDK's schema has a
     * non-null {@code finish_reason}, which OpenAI's own streams send as null until the last chunk.)
     */
    static List<Completion> stream(OpenAIClient c, CompletionCreateParams p) {
        try (StreamResponse<Completion> s = c.completions().createStreaming(p)) {
            return s.stream().collect(Collectors.toList());
        }
    }

    /** Per choice index: the concatenated text of a stream's chunks. */
    static Map<Long, String> texts(List<Completion> chunks) {
        Map<Long, String> out = new TreeMap<>();
        for (Completion c : chunks) {
            for (CompletionChoice ch : c.choices()) {
                out.merge(ch.index(), ch.text(), String::concat);
            }
        }
        return out;
    }

    /** Per choice index: the finish reasons the stream sent (exactly one is expected, on its last chunk). */
    static Map<Long, List<String>> finishes(List<Completion> chunks) {
        Map<Long, List<String>> out = new TreeMap<>();
        for (Completion c : chunks) {
            for (CompletionChoice ch : c.choices()) {
                ch._finishReason().asKnown().ifPresent(f -> out.computeIfAbsent(ch.index(), k -> new ArrayList<>()).add(f.asString()));
            }
        }
        return out;
    }

    static String text(Completion c, int i) {
        return c.choices().get(i).text();
    }

    @Test
    void completionHasOpenAisShapeAndEqualsTheRawHttpAnswer() throws Exception {
        long before = System.currentTimeMillis() / 1000;
        Completion c = client.completions().create(greedy("demo", 20)).validate();
        assertTrue(c.id().startsWith("cmpl-"), c.id());
        assertEquals(JsonValue.from("text_completion"), c._object_());
        assertEquals("demo", c.model());
        assertTrue(c.created() >= before - 1 && c.created() <= System.currentTimeMillis() / 1000 + 1, "created " + c.created());
        assertEquals(1, c.choices().size());
        CompletionChoice ch = c.choices().get(0);
        assertEquals(0, ch.index());
        assertTrue(ch.logprobs().isEmpty(), "no logprobs asked for");
        assertTrue(!ch.text().isEmpty(), "generates text");
        CompletionUsage u = c.usage().orElseThrow();
        assertEquals(tokenizer.encode(PROMPT, true).length, u.promptTokens());
        assertEquals(u.promptTokens() + u.completionTokens(), u.totalTokens());
        assertTrue(u.completionTokens() >= 1 && u.completionTokens() <= 20, "completion tokens " + u.completionTokens());
        if (ch.finishReason().equals(CompletionChoice.FinishReason.LENGTH)) {
            assertEquals(20, u.completionTokens());
        } else {
            assertEquals(CompletionChoice.FinishReason.STOP, ch.finishReason());
        }

        // the SDK reads what the server sent: the same request over plain HTTP gives the same choice
        HttpResponse<String> raw = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(servers.openBase + "/v1/completions"))
            .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(
                "{\"model\":\"demo\",\"prompt\":" + JSON.writeValueAsString(PROMPT) + ",\"max_tokens\":20,\"temperature\":0}")).build(),
            HttpResponse.BodyHandlers.ofString());
        JsonNode rc = JSON.readTree(raw.body()).get("choices").get(0);
        assertEquals(rc.get("text").asText(), ch.text());
        assertEquals(rc.get("finish_reason").asText(), ch.finishReason().asString());
        // greedy decoding repeats
        assertEquals(ch.text(), text(client.completions().create(greedy("demo", 20)), 0));
    }

    @Test
    void streamedDeltasConcatenateToTheNonStreamedText() {
        for (CompletionCreateParams p : List.of(greedy("demo", 24),
            params("demo", PROMPT, 24).temperature(1.0).topP(0.9).seed(5L).build())) {
            Completion full = client.completions().create(p);
            CompletionCreateParams sp = p.toBuilder().streamOptions(ChatCompletionStreamOptions.builder().includeUsage(true).build()).build();
            List<Completion> chunks = stream(client, sp);
            assertTrue(chunks.size() >= 3, "a stream of several chunks, got " + chunks.size());
            Set<String> ids = chunks.stream().map(Completion::id).collect(Collectors.toSet());
            assertEquals(1, ids.size(), "every chunk carries the stream's id: " + ids);
            for (Completion c : chunks) {
                assertEquals("demo", c.model());
                assertEquals(JsonValue.from("text_completion"), c._object_());
            }
            assertEquals(Map.of(0L, text(full, 0)), texts(chunks));
            assertEquals(Map.of(0L, List.of(full.choices().get(0).finishReason().asString())), finishes(chunks));
            // include_usage: a last chunk with no choices and the request's usage
            Completion last = chunks.get(chunks.size() - 1);
            assertTrue(last.choices().isEmpty(), "the usage chunk has no choices");
            assertEquals(full.usage().orElseThrow(), last.usage().orElseThrow());
            for (Completion c : chunks.subList(0, chunks.size() - 1)) {
                assertTrue(c.usage().isEmpty(), "only the last chunk has usage");
            }
        }
    }

    @Test
    void logprobsAreConsistentWithTheText() {
        Completion c = client.completions().create(params("demo", PROMPT, 16).temperature(0.0).logprobs(3L).build()).validate();
        CompletionChoice ch = c.choices().get(0);
        CompletionChoice.Logprobs lp = ch.logprobs().orElseThrow();
        List<String> tokens = lp.tokens().orElseThrow();
        List<Double> tokenLogprobs = lp.tokenLogprobs().orElseThrow();
        List<CompletionChoice.Logprobs.TopLogprob> top = lp.topLogprobs().orElseThrow();
        List<Long> offsets = lp.textOffset().orElseThrow();
        long generated = c.usage().orElseThrow().completionTokens();
        // the end-of-sequence token counts in usage but is not part of the text nor of logprobs
        assertTrue(tokens.size() == generated || (tokens.size() == generated - 1 && ch.finishReason().equals(CompletionChoice.FinishReason.STOP)),
            tokens.size() + " tokens for " + generated + " generated");
        assertEquals(tokens.size(), tokenLogprobs.size());
        assertEquals(tokens.size(), top.size());
        assertEquals(tokens.size(), offsets.size());
        long at = 0;
        for (int i = 0; i < tokens.size(); i++) {
            assertEquals(at, offsets.get(i), "text_offset of token " + i);
            at += tokens.get(i).length();
            double chosen = tokenLogprobs.get(i);
            assertTrue(chosen <= 0 && Double.isFinite(chosen), "a log-probability: " + chosen);
            Map<String, JsonValue> alts = top.get(i)._additionalProperties();
            // distinct ids can decode to the same string, so there are at most 3 entries
            assertTrue(alts.size() >= 1 && alts.size() <= 3, "top_logprobs " + alts);
            double best = Double.NEGATIVE_INFINITY;
            for (JsonValue v : alts.values()) {
                double d = v.convert(Double.class);
                assertTrue(d <= 0, "a log-probability: " + d);
                best = Math.max(best, d);
            }
            // greedy: the chosen token is the most likely one
            assertEquals(best, chosen, 1e-5, "token " + i + " '" + tokens.get(i) + "' is not the top alternative " + alts);
            assertTrue(alts.containsKey(tokens.get(i)), "the chosen token is among the alternatives: " + tokens.get(i) + " " + alts);
        }
        assertEquals(ch.text().length(), at, "the tokens' texts add up to the text's length");
        // asking for logprobs changes nothing else
        assertEquals(ch.text(), text(client.completions().create(greedy("demo", 16)), 0));
    }

    @Test
    void anAdapterChosenByModelEqualsItsMergedTwinAndDiffersFromTheBase() {
        CompletionCreateParams p = params(ADAPTER, PROMPT, 24).temperature(0.0).logprobs(1L).build();
        Completion got = client.completions().create(p).validate();
        assertEquals(ADAPTER, got.model(), "the response names the adapter");
        Completion expected = twin.completions().create(p.toBuilder().model("demo").build());
        assertEquals(text(expected, 0), text(got, 0), "the adapter's text equals its merged-weights twin's");
        List<Double> a = expected.choices().get(0).logprobs().orElseThrow().tokenLogprobs().orElseThrow();
        List<Double> b = got.choices().get(0).logprobs().orElseThrow().tokenLogprobs().orElseThrow();
        assertEquals(a.size(), b.size());
        for (int i = 0; i < a.size(); i++) {
            assertEquals(a.get(i), b.get(i), 1e-4, "logprob of token " + i);
        }
        String base = text(client.completions().create(greedy("demo", 24)), 0);
        assertNotEquals(base, text(got, 0), "the adapter changes the base model's output");
        // streamed, the adapter gives the same text
        assertEquals(Map.of(0L, text(got, 0)), texts(stream(client, greedy(ADAPTER, 24))));
        // every demo adapter is deterministic and named in its response; most of them change the output
        int differing = 0;
        for (DemoAdapters.Spec s : DemoAdapters.ALL) {
            Completion one = client.completions().create(greedy(s.name(), 24));
            assertEquals(s.name(), one.model());
            assertEquals(text(one, 0), text(client.completions().create(greedy(s.name(), 24)), 0), s.name() + " repeats");
            differing += text(one, 0).equals(base) ? 0 : 1;
        }
        assertTrue(differing >= 3, "only " + differing + " of " + DemoAdapters.ALL.size() + " adapters change the output");
    }

    @Test
    void nChoicesAreSeededAndStreamPerIndex() {
        CompletionCreateParams p = params("demo", PROMPT, 12).n(3L).temperature(1.0).seed(11L).build();
        Completion c = client.completions().create(p).validate();
        assertEquals(3, c.choices().size());
        Set<String> distinct = new HashSet<>();
        for (int i = 0; i < 3; i++) {
            assertEquals(i, c.choices().get(i).index());
            distinct.add(text(c, i));
        }
        assertTrue(distinct.size() >= 2, "three sampled choices are not all the same: " + distinct);
        Completion again = client.completions().create(p);
        for (int i = 0; i < 3; i++) {
            assertEquals(text(c, i), text(again, i), "a seed repeats choice " + i);
        }
        List<Completion> chunks = stream(client, p);
        Map<Long, String> streamed = texts(chunks);
        Map<Long, List<String>> finishes = finishes(chunks);
        for (int i = 0; i < 3; i++) {
            assertEquals(text(c, i), streamed.get((long) i), "streamed choice " + i);
            assertEquals(List.of(c.choices().get(i).finishReason().asString()), finishes.get((long) i), "finish of choice " + i);
        }

        // two prompts × n=2, greedy: choices 0,1 belong to the first prompt, 2,3 to the second
        String other = "Adapters share batches";
        Completion two = client.completions().create(CompletionCreateParams.builder().model("demo")
            .promptOfArrayOfStrings(List.of(PROMPT, other)).maxTokens(10L).n(2L).temperature(0.0).build()).validate();
        assertEquals(4, two.choices().size());
        String first = text(client.completions().create(params("demo", PROMPT, 10).temperature(0.0).build()), 0);
        String second = text(client.completions().create(params("demo", other, 10).temperature(0.0).build()), 0);
        assertNotEquals(first, second, "two prompts, two continuations");
        assertEquals(List.of(first, first, second, second), List.of(text(two, 0), text(two, 1), text(two, 2), text(two, 3)));
    }

    @Test
    void stopStringsCutTheTextPlainAndStreamed() {
        String full = text(client.completions().create(greedy("demo", 32)), 0);
        assertTrue(full.length() >= 12, "the reference continuation is long enough to cut: '" + full + "'");
        String stop = full.substring(6, 8);
        String expected = full.substring(0, full.indexOf(stop));
        Completion cut = client.completions().create(params("demo", PROMPT, 32).temperature(0.0).stop(stop).build()).validate();
        assertEquals(expected, text(cut, 0));
        assertEquals(CompletionChoice.FinishReason.STOP, cut.choices().get(0).finishReason());
        assertTrue(cut.usage().orElseThrow().completionTokens() < 32, "generation stopped early");

        // several stops: the earliest match wins, whichever is listed first
        String later = full.substring(9, 11);
        Completion many = client.completions().create(params("demo", PROMPT, 32).temperature(0.0)
            .stopOfStrings(List.of(later, stop)).build());
        String expectedMany = full.substring(0, Math.min(full.indexOf(stop), full.indexOf(later)));
        assertEquals(expectedMany, text(many, 0));

        List<Completion> chunks = stream(client, params("demo", PROMPT, 32).temperature(0.0).stop(stop).build());
        assertEquals(Map.of(0L, expected), texts(chunks));
        assertEquals(Map.of(0L, List.of("stop")), finishes(chunks));
    }

    @Test
    void modelsListTheBaseAndTheAdapters() {
        List<Model> models = client.models().list().data();
        Map<String, Model> byId = models.stream().map(Model::validate).collect(Collectors.toMap(Model::id, m -> m));
        Set<String> expected = new HashSet<>(List.of("demo"));
        DemoAdapters.ALL.forEach(s -> expected.add(s.name()));
        assertEquals(expected, byId.keySet());
        assertEquals("system", byId.get(ADAPTER).ownedBy());
        assertEquals(JsonValue.from("demo"), byId.get(ADAPTER)._additionalProperties().get("parent"));
        assertEquals(JsonValue.from("model"), byId.get("demo")._object_());
    }

    @Test
    void unknownModelIsNotFoundException() {
        NotFoundException e = assertThrows(NotFoundException.class, () -> client.completions().create(greedy("no-such-adapter", 4)));
        assertServiceError(e, 404, "model", "no-such-adapter");
        assertEquals("model_not_found", e.code().orElseThrow());
        NotFoundException s = assertThrows(NotFoundException.class, () -> stream(client, greedy("no-such-adapter", 4)));
        assertEquals(404, s.statusCode());
    }

    @Test
    void badRequestsAreBadRequestException() {
        BadRequestException len = assertThrows(BadRequestException.class, () -> client.completions().create(greedy("demo", 100_000)));
        assertServiceError(len, 400, "max_tokens", String.valueOf(MAX_LEN), "100000");
        BadRequestException topP = assertThrows(BadRequestException.class,
            () -> client.completions().create(params("demo", PROMPT, 4).topP(0.0).build()));
        assertServiceError(topP, 400, "top_p", "top_p");
        BadRequestException lp = assertThrows(BadRequestException.class,
            () -> client.completions().create(params("demo", PROMPT, 4).logprobs(6L).build()));
        assertServiceError(lp, 400, "logprobs", "logprobs");
        BadRequestException n = assertThrows(BadRequestException.class,
            () -> stream(client, params("demo", PROMPT, 4).n(Completions.MAX_N + 1L).build()));
        assertServiceError(n, 400, "n", String.valueOf(Completions.MAX_N));
        BadRequestException tokens = assertThrows(BadRequestException.class, () -> client.completions().create(
            CompletionCreateParams.builder().model("demo").promptOfArrayOfTokens(List.of(1L, (long) tokenizer.vocabSize() + 7)).build()));
        assertServiceError(tokens, 400, "prompt", String.valueOf(tokenizer.vocabSize() + 7));
    }

    @Test
    void apiKeysAreCheckedUnauthorizedException() {
        OpenAIClient wrong = servers.client(servers.authBase, "sk-wrong");
        UnauthorizedException e = assertThrows(UnauthorizedException.class, () -> wrong.completions().create(greedy("demo", 4)));
        assertServiceError(e, 401, null, "API key");
        assertEquals("invalid_api_key", e.code().orElseThrow());
        assertThrows(UnauthorizedException.class, () -> stream(wrong, greedy("demo", 4)));
        assertThrows(UnauthorizedException.class, () -> wrong.models().list());

        OpenAIClient right = servers.client(servers.authBase, SdkServers.KEY);
        // the tenant sees the system adapters, and gets what an open server gives
        assertEquals(text(client.completions().create(greedy(ADAPTER, 12)), 0), text(right.completions().create(greedy(ADAPTER, 12)), 0));
        assertEquals(1 + DemoAdapters.ALL.size(), right.models().list().data().size());
    }

    /** The SDK parsed the error body: status, type, param and a message holding every fragment. */
    static void assertServiceError(OpenAIServiceException e, int status, String param, String... fragments) {
        assertEquals(status, e.statusCode());
        assertTrue(e.type().isPresent(), "an error type: " + e.body());
        if (param != null) {
            assertEquals(param, e.param().orElse(null), e.body().toString());
        }
        String message = e.getMessage();
        for (String f : fragments) {
            assertTrue(message.contains(f), "the message names '" + f + "': " + message);
        }
    }
}
