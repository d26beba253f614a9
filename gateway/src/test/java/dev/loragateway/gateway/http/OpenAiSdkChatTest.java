package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.openai.client.OpenAIClient;
import com.openai.core.JsonValue;
import com.openai.core.http.StreamResponse;
import com.openai.errors.BadRequestException;
import com.openai.errors.NotFoundException;
import com.openai.errors.UnauthorizedException;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionStreamOptions;
import com.openai.models.chat.completions.ChatCompletionTokenLogprob;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionCreateParams;
import com.openai.models.completions.CompletionUsage;
import dev.loragateway.gateway.text.ChatTemplate;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/**
 * {@code POST /v1/chat/completions} through the official OpenAI Java SDK, as the contract states it:
 * the prompt is the model's chat template rendered with {@code add_generation_prompt=true} and
 * tokenized without adding special tokens again, so a greedy chat answer equals a greedy legacy
 * completion of those token ids; streamed deltas concatenate to the answer; logprobs and
 * top_logprobs; an adapter chosen by {@code model} (against its merged-weights twin); errors as the
 * SDK's exception types.
 */

class OpenAiSdkChatTest extends SdkTestBase {
    private static final String SYSTEM = "You are the gateway's helpful assistant.";
    private static final String USER = "Which adapters do you serve today?";

    static ChatCompletionCreateParams.Builder chat(String model, long maxTokens) {
        return ChatCompletionCreateParams.builder().model(model).addSystemMessage(SYSTEM).addUserMessage(USER)
            .maxCompletionTokens(maxTokens);
    }

    static ChatCompletionCreateParams greedy(String model, long maxTokens) {
        return chat(model, maxTokens).temperature(0.0).build();
    }

    /** The prompt's token ids as the contract says the server makes them. */
    static List<Long> promptIds() {
        String rendered = ChatTemplate.of(tokenizer).orElseThrow().render(
            List.of(Map.of("role", "system", "content", SYSTEM), Map.of("role", "user", "content", USER)), true);
        return Arrays.stream(tokenizer.encode(rendered, false)).mapToLong(i -> i).boxed().collect(Collectors.toList());
    }

    static List<ChatCompletionChunk> stream(OpenAIClient c, ChatCompletionCreateParams p) {
        try (StreamResponse<ChatCompletionChunk> s = c.chat().completions().createStreaming(p)) {
            return s.stream().collect(Collectors.toList());
        }
    }

    static Map<Long, String> texts(List<ChatCompletionChunk> chunks) {
        Map<Long, String> out = new TreeMap<>();
        for (ChatCompletionChunk c : chunks) {
            for (ChatCompletionChunk.Choice ch : c.choices()) {
                out.merge(ch.index(), ch.delta().content().orElse(""), String::concat);
            }
        }
        return out;
    }

    static Map<Long, List<String>> finishes(List<ChatCompletionChunk> chunks) {
        Map<Long, List<String>> out = new TreeMap<>();
        for (ChatCompletionChunk c : chunks) {
            for (ChatCompletionChunk.Choice ch : c.choices()) {
                ch.finishReason().ifPresent(f -> out.computeIfAbsent(ch.index(), k -> new ArrayList<>()).add(f.asString()));
            }
        }
        return out;
    }

    static String content(ChatCompletion c, int i) {
        return c.choices().get(i).message().content().orElse("");
    }

    @Test
    void greedyChatEqualsACompletionOfTheRenderedTemplate() {
        List<Long> ids = promptIds();
        Completion reference = client.completions().create(CompletionCreateParams.builder().model("demo")
            .promptOfArrayOfTokens(ids).maxTokens(24L).temperature(0.0).build());
        long before = System.currentTimeMillis() / 1000;
        ChatCompletion c = client.chat().completions().create(greedy("demo", 24)).validate();
        assertTrue(c.id().startsWith("chatcmpl-"), c.id());
        assertEquals(JsonValue.from("chat.completion"), c._object_());
        assertEquals("demo", c.model());
        assertTrue(c.created() >= before - 1 && c.created() <= System.currentTimeMillis() / 1000 + 1, "created " + c.created());
        assertEquals(1, c.choices().size());
        ChatCompletion.Choice ch = c.choices().get(0);
        assertEquals(JsonValue.from("assistant"), ch.message()._role());
        assertEquals(reference.choices().get(0).text(), content(c, 0), "chat = completion of the rendered template's ids");
        assertEquals(reference.choices().get(0).finishReason().asString(), ch.finishReason().asString());
        CompletionUsage u = c.usage().orElseThrow();
        assertEquals(ids.size(), u.promptTokens(), "the template is tokenized without adding special tokens again");
        assertEquals(reference.usage().orElseThrow().completionTokens(), u.completionTokens());
        assertEquals(u.promptTokens() + u.completionTokens(), u.totalTokens());
        assertTrue(ch.logprobs().isEmpty(), "no logprobs asked for");
        // the older max_tokens means the same
        ChatCompletion old = client.chat().completions().create(ChatCompletionCreateParams.builder().model("demo")
            .addSystemMessage(SYSTEM).addUserMessage(USER).maxTokens(24L).temperature(0.0).build());
        assertEquals(content(c, 0), content(old, 0));
        // and a multi-turn conversation renders every turn: another prompt, another answer
        ChatCompletion turns = client.chat().completions().create(chat("demo", 24).addAssistantMessage(content(c, 0))
            .addUserMessage("And which one is the fastest?").temperature(0.0).build());
        assertTrue(turns.usage().orElseThrow().promptTokens() > u.promptTokens());
    }

    @Test
    void streamedDeltasConcatenateToTheAnswer() {
        for (ChatCompletionCreateParams p : List.of(greedy("demo", 24), chat("demo", 24).temperature(1.0).seed(3L).build())) {
            ChatCompletion full = client.chat().completions().create(p);
            List<ChatCompletionChunk> chunks = stream(client,
                p.toBuilder().streamOptions(ChatCompletionStreamOptions.builder().includeUsage(true).build()).build());
            assertTrue(chunks.size() >= 3, "several chunks, got " + chunks.size());
            Set<String> ids = chunks.stream().map(ChatCompletionChunk::id).collect(Collectors.toSet());
            assertEquals(1, ids.size(), "one id per stream: " + ids);
            for (ChatCompletionChunk c : chunks) {
                assertEquals(JsonValue.from("chat.completion.chunk"), c._object_());
                assertEquals("demo", c.model());
            }
            assertEquals("assistant", chunks.get(0).choices().get(0).delta().role().orElseThrow().asString(),
                "the first delta names the role");
            assertEquals(Map.of(0L, content(full, 0)), texts(chunks));
            assertEquals(Map.of(0L, List.of(full.choices().get(0).finishReason().asString())), finishes(chunks));
            ChatCompletionChunk last = chunks.get(chunks.size() - 1);
            assertTrue(last.choices().isEmpty(), "the usage chunk has no choices");
            assertEquals(full.usage().orElseThrow(), last.usage().orElseThrow());
        }
    }

    @Test
    void logprobsAndTopLogprobs() {
        ChatCompletion c = client.chat().completions().create(chat("demo", 16).temperature(0.0).logprobs(true).topLogprobs(3L).build())
            .validate();
        List<ChatCompletionTokenLogprob> lps = c.choices().get(0).logprobs().orElseThrow().content().orElseThrow();
        long generated = c.usage().orElseThrow().completionTokens();
        assertTrue(lps.size() == generated || (lps.size() == generated - 1 && c.choices().get(0).finishReason().asString().equals("stop")),
            lps.size() + " logprobs for " + generated + " tokens (the end-of-sequence token is not part of the answer)");
        StringBuilder joined = new StringBuilder();
        for (ChatCompletionTokenLogprob t : lps) {
            joined.append(t.token());
            assertTrue(t.logprob() <= 0 && Double.isFinite(t.logprob()), "a log-probability: " + t.logprob());
            assertEquals(3, t.topLogprobs().size(), "top_logprobs: 3 alternatives");
            double prev = 0;
            for (ChatCompletionTokenLogprob.TopLogprob alt : t.topLogprobs()) {
                assertTrue(alt.logprob() <= prev + 1e-9, "alternatives sorted most likely first");
                prev = alt.logprob();
            }
            // greedy: the chosen token is the most likely one
            assertEquals(t.topLogprobs().get(0).token(), t.token());
            assertEquals(t.topLogprobs().get(0).logprob(), t.logprob(), 1e-5);
        }
        assertEquals(content(c, 0), joined.toString(), "the tokens spell the answer");
        assertEquals(content(c, 0), content(client.chat().completions().create(greedy("demo", 16)), 0), "logprobs change nothing else");

        // logprobs without top_logprobs: no alternatives
        ChatCompletion plain = client.chat().completions().create(chat("demo", 8).temperature(0.0).logprobs(true).build());
        for (ChatCompletionTokenLogprob t : plain.choices().get(0).logprobs().orElseThrow().content().orElseThrow()) {
            assertTrue(t.topLogprobs().isEmpty(), "no top_logprobs asked for");
        }
    }

    @Test
    void streamedLogprobsMatchTheNonStreamedOnes() {
        ChatCompletionCreateParams p = chat("demo", 16).temperature(0.0).logprobs(true).topLogprobs(2L).build();
        List<ChatCompletionTokenLogprob> full = client.chat().completions().create(p).choices().get(0).logprobs().orElseThrow()
            .content().orElseThrow();
        List<ChatCompletionTokenLogprob> streamed = new ArrayList<>();
        for (ChatCompletionChunk c : stream(client, p)) {
            for (ChatCompletionChunk.Choice ch : c.choices()) {
                ch.logprobs().flatMap(ChatCompletionChunk.Choice.Logprobs::content).ifPresent(streamed::addAll);
            }
        }
        assertEquals(full.stream().map(ChatCompletionTokenLogprob::token).collect(Collectors.toList()),
            streamed.stream().map(ChatCompletionTokenLogprob::token).collect(Collectors.toList()));
        for (int i = 0; i < full.size(); i++) {
            assertEquals(full.get(i).logprob(), streamed.get(i).logprob(), 1e-6);
        }
    }

    @Test
    void anAdapterChosenByModelEqualsItsMergedTwin() {
        ChatCompletion got = client.chat().completions().create(greedy(SdkServers.ADAPTER, 24)).validate();
        assertEquals(SdkServers.ADAPTER, got.model());
        ChatCompletion expected = twin.chat().completions().create(greedy("demo", 24));
        assertEquals(content(expected, 0), content(got, 0), "the adapter's answer equals its merged-weights twin's");
        assertNotEquals(content(client.chat().completions().create(greedy("demo", 24)), 0), content(got, 0),
            "the adapter changes the answer");
        List<ChatCompletionChunk> chunks = stream(client, greedy(SdkServers.ADAPTER, 24));
        assertEquals(Map.of(0L, content(got, 0)), texts(chunks));
        assertTrue(chunks.stream().allMatch(c -> c.model().equals(SdkServers.ADAPTER)), "every chunk names the adapter");
    }

    @Test
    void nChoicesAndStopStrings() {
        ChatCompletionCreateParams p = chat("demo", 12).n(3L).temperature(1.0).seed(21L).build();
        ChatCompletion c = client.chat().completions().create(p).validate();
        assertEquals(3, c.choices().size());
        Set<String> distinct = new HashSet<>();
        for (int i = 0; i < 3; i++) {
            assertEquals(i, c.choices().get(i).index());
            distinct.add(content(c, i));
        }
        assertTrue(distinct.size() >= 2, "sampled choices differ: " + distinct);
        Map<Long, String> streamed = texts(stream(client, p));
        for (int i = 0; i < 3; i++) {
            assertEquals(content(c, i), streamed.get((long) i), "streamed choice " + i);
        }

        String full = content(client.chat().completions().create(greedy("demo", 32)), 0);
        assertTrue(full.length() >= 10, "a reference answer long enough to cut: '" + full + "'");
        String stop = full.substring(5, 7);
        ChatCompletion cut = client.chat().completions().create(chat("demo", 32).temperature(0.0).stop(stop).build());
        assertEquals(full.substring(0, full.indexOf(stop)), content(cut, 0));
        assertEquals("stop", cut.choices().get(0).finishReason().asString());
        assertFalse(content(cut, 0).contains(stop));
    }

    @Test
    void errorsAreTheSdksExceptions() {
        NotFoundException nf = assertThrows(NotFoundException.class,
            () -> client.chat().completions().create(greedy("no-such-adapter", 4)));
        assertEquals(404, nf.statusCode());
        assertTrue(nf.getMessage().contains("no-such-adapter"), nf.getMessage());
        assertThrows(NotFoundException.class, () -> stream(client, greedy("no-such-adapter", 4)));

        BadRequestException len = assertThrows(BadRequestException.class,
            () -> client.chat().completions().create(greedy("demo", 100_000)));
        assertTrue(len.getMessage().contains(String.valueOf(SdkServers.MAX_LEN)) && len.getMessage().contains("100000"), len.getMessage());
        BadRequestException empty = assertThrows(BadRequestException.class, () -> client.chat().completions().create(
            ChatCompletionCreateParams.builder().model("demo").messages(List.of()).build()));
        assertTrue(empty.getMessage().contains("messages"), empty.getMessage());

        OpenAIClient wrong = servers.client(servers.authBase, "sk-wrong");
        UnauthorizedException e = assertThrows(UnauthorizedException.class, () -> wrong.chat().completions().create(greedy("demo", 4)));
        assertEquals(401, e.statusCode());
        OpenAIClient right = servers.client(servers.authBase, SdkServers.KEY);
        assertEquals(content(client.chat().completions().create(greedy("demo", 8)), 0),
            content(right.chat().completions().create(greedy("demo", 8)), 0));
    }
}
