package dev.loragateway.gateway.text;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

class ChatTemplateTest {

    private static final Clock JULY_26_2024 = Clock.fixed(
            LocalDateTime.of(2024, 7, 26, 9, 5).toInstant(ZoneOffset.UTC), ZoneOffset.UTC);

    private static final List<Map<String, Object>> CONVERSATION = List.of(
            Map.of("role", "user", "content", "Hello!"),
            Map.of("role", "assistant", "content", "Hi! How can I help?"),
            Map.of("role", "user", "content", "Tell me a joke."));

    static String resource(String path) {
        try (InputStream in = ChatTemplateTest.class.getResourceAsStream("/text/" + path)) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    private static ChatTemplate template(String file) {
        return new ChatTemplate(resource("templates/" + file), null, null, JULY_26_2024);
    }

    private static String render(String template, Map<String, ?> vars) {
        return new ChatTemplate(template, "<s>", "</s>", JULY_26_2024)
                .render(CONVERSATION, true, "<s>", "</s>", vars);
    }

    // --- the four well-known formats, written out by hand -------------------------------------

    @Test
    void llama3Instruct() {
        assertEquals("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
                        + "<|start_header_id|>assistant<|end_header_id|>\n\nHi! How can I help?<|eot_id|>"
                        + "<|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|>"
                        + "<|start_header_id|>assistant<|end_header_id|>\n\n",
                template("llama3.jinja").render(CONVERSATION, true, "<|begin_of_text|>", "<|eot_id|>"));
    }

    @Test
    void chatMlQwen2() {
        assertEquals("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                        + "<|im_start|>user\nHello!<|im_end|>\n"
                        + "<|im_start|>assistant\nHi! How can I help?<|im_end|>\n"
                        + "<|im_start|>user\nTell me a joke.<|im_end|>\n"
                        + "<|im_start|>assistant\n",
                template("chatml.jinja").render(CONVERSATION, true, null, "<|im_end|>"));
    }

    @Test
    void llama2Chat() {
        assertEquals("<s>[INST] Hello! [/INST] Hi! How can I help? </s><s>[INST] Tell me a joke. [/INST]",
                template("llama2.jinja").render(CONVERSATION, true, "<s>", "</s>"));
        List<Map<String, Object>> withSystem = List.of(
                Map.of("role", "system", "content", "You are a pirate."),
                Map.of("role", "user", "content", "  Hello!  "));
        assertEquals("<s>[INST] <<SYS>>\nYou are a pirate.\n<</SYS>>\n\n  Hello! [/INST]",
                template("llama2.jinja").render(withSystem, true, "<s>", "</s>"));
    }

    @Test
    void mistralInstruct() {
        assertEquals("<s>[INST] Hello! [/INST]Hi! How can I help?</s>[INST] Tell me a joke. [/INST]",
                template("mistral.jinja").render(CONVERSATION, true, "<s>", "</s>"));
    }

    @Test
    void raiseExceptionCarriesTheTemplatesMessage() {
        List<Map<String, Object>> twoUsers = List.of(
                Map.of("role", "user", "content", "a"), Map.of("role", "user", "content", "b"));
        for (String file : List.of("llama2.jinja", "mistral.jinja")) {
            ChatTemplateException e = assertThrows(ChatTemplateException.class,
                    () -> template(file).render(twoUsers, true, "<s>", "</s>"));
            assertEquals("Conversation roles must alternate user/assistant/user/assistant/...",
                    e.getMessage());
            assertTrue(e.raisedByTemplate());
        }
        ChatTemplateException e = assertThrows(ChatTemplateException.class,
                () -> render("{{ raise_exception('bad ' ~ messages|length) }}", Map.of()));
        assertEquals("bad 3", e.getMessage());
    }

    // --- every case of template_cases.json against Jinja2's output ----------------------------

    @TestFactory
    Stream<DynamicTest> rendersAsJinja2() throws IOException {
        ObjectMapper json = new ObjectMapper();
        List<Map<String, Object>> cases =
                json.readValue(resource("template_cases.json"), new TypeReference<>() {});
        List<Map<String, String>> expected =
                json.readValue(resource("template_expected.json"), new TypeReference<>() {});
        List<DynamicTest> tests = new ArrayList<>();
        for (int i = 0; i < cases.size(); i++) {
            Map<String, Object> c = cases.get(i);
            Map<String, String> want = expected.get(i);
            String name = i + " " + c.get("template");
            tests.add(DynamicTest.dynamicTest(name, () -> {
                @SuppressWarnings("unchecked")
                List<Map<String, Object>> messages = (List<Map<String, Object>>) c.get("messages");
                @SuppressWarnings("unchecked")
                Map<String, Object> vars = (Map<String, Object>) c.getOrDefault("variables", Map.of());
                ChatTemplate t = template((String) c.get("template"));
                if (want.containsKey("error")) {
                    ChatTemplateException e = assertThrows(ChatTemplateException.class,
                            () -> t.render(messages, (Boolean) c.get("add_generation_prompt"),
                                    (String) c.get("bos_token"), (String) c.get("eos_token"), vars));
                    assertEquals(want.get("error"), e.getMessage());
                } else {
                    assertEquals(want.get("output"), t.render(messages,
                            (Boolean) c.get("add_generation_prompt"), (String) c.get("bos_token"),
                            (String) c.get("eos_token"), vars));
                }
            }));
        }
        return tests.stream();
    }

    // --- the helpers Jinjava lacks ------------------------------------------------------------

    @Test
    void pythonStringMethods() {
        assertEquals("True|True|False", render("{{ messages[0].content.startswith('Hel') }}|"
                + "{{ messages[0].content.endswith(('x', '!')) }}|{{ 'abc'.startswith('b') }}",
                Map.of()));
        assertEquals("[a b][a][hi][hi  ][  hi]", render("[{{ '  a b \\n'.strip() }}]"
                + "[{{ 'xxaxx'.strip('x') }}][{{ '\\n\\nhi'.lstrip('\\n') }}][{{ 'hi  '.lstrip() }}]"
                + "[{{ '  hi\\t'.rstrip() }}]", Map.of()));
        assertEquals("HELLO hello Hello World Hello",
                render("{{ 'Hello'.upper() }} {{ 'Hello'.lower() }} {{ 'hello world'.title() }} "
                        + "{{ 'hELLO'.capitalize() }}", Map.of()));
        assertEquals("[a][b][c](a)(b)()(c)2", render("{% for p in ' a b  c '.split() %}[{{ p }}]"
                + "{% endfor %}{% for p in 'a,b,,c'.split(',') %}({{ p }}){% endfor %}"
                + "{{ 'a,b,c'.split(',', 1)|length }}", Map.of()));
        assertEquals("z|y", render("{{ 'x<think>y</think>z'.split('</think>')[-1] }}|"
                + "{{ 'x<think>y</think>z'.split('</think>')[0].split('<think>')[-1] }}", Map.of()));
        assertEquals("bbb bba|H!|ello|a, b|2|2", render("{{ 'aaa'.replace('a', 'b') }} "
                + "{{ 'aaa'.replace('a', 'b', 2) }}|{{ messages[0]['content'][0] }}"
                + "{{ messages[0]['content'][-1] }}|{{ messages[0]['content'][1:-1] }}|"
                + "{{ ', '.join(['a', 'b']) }}|{{ 'abcabc'.count('b') }}|{{ 'abc'.find('c') }}",
                Map.of()));
    }

    @Test
    void strftimeNowUsesTheInjectedClock() {
        assertEquals("26 Jul 2024|2024-07-26 09:05|defined", render("{{ strftime_now('%d %b %Y') }}|"
                + "{{ strftime_now('%Y-%m-%d %H:%M') }}|"
                + "{% if strftime_now is defined %}defined{% endif %}", Map.of()));
    }

    @Test
    void tojsonWritesAsPythonsJsonDumps() {
        Map<String, Object> tool = new java.util.LinkedHashMap<>();
        tool.put("name", "f");
        tool.put("args", List.of(1, 2.5, true, "é\"\n"));
        tool.put("none", null);
        assertEquals("{\"name\": \"f\", \"args\": [1, 2.5, true, \"é\\\"\\n\"], \"none\": null}",
                render("{{ tool | tojson }}", Map.of("tool", tool)));
        assertEquals("{\n  \"name\": \"f\",\n  \"args\": [\n    1,\n    2.5,\n    true,\n"
                        + "    \"é\\\"\\n\"\n  ],\n  \"none\": null\n}",
                render("{{ tool | tojson(indent=2) }}", Map.of("tool", tool)));
    }

    @Test
    void whitespaceControlAndPythonPrecedence() {
        assertEquals("U:Hello!A:Hi! How can I help?U:Tell me a joke.",
                render("{%- for m in messages %}\n    {%- if m.role == 'user' %}\n"
                        + "        {{- 'U:' + m.content }}\n    {%- else %}\n"
                        + "        {{- 'A:' + m.content }}\n    {%- endif %}\n{%- endfor %}\n",
                        Map.of()));
        // Jinja2: `not x is defined` is `not (x is defined)`; Jinjava alone reads `(not x) ...`
        assertEquals("given|NY|True|False", render("{%- if not d is defined %}{% set d = 'D' %}"
                + "{% endif %}{{ d }}|{% if not y is defined %}NY{% endif %}|"
                + "{{ not 'q' in ['a'] }}|{{ not messages|length == 3 }}", Map.of("d", "given")));
        assertEquals("user3True|assistant", render("{% for m in messages if m.role == 'user' %}"
                + "{% if loop.last %}{{ m.role }}{{ loop.index + 1 }}{{ loop.last }}{% endif %}"
                + "{% endfor %}|{% for m in messages[::-1] if not m.role == 'user' %}{{ m.role }}"
                + "{% endfor %}", Map.of()));
    }

    @Test
    void messageContentIsNeverRenderedAsATemplate() {
        List<Map<String, Object>> evil = List.of(Map.of("role", "user",
                "content", "{{ raise_exception('pwned') }} {% for %} {{ 7*7 }}"));
        assertEquals("{{ raise_exception('pwned') }} {% for %} {{ 7*7 }}",
                new ChatTemplate("{{ messages[0].content }}").render(evil, false));
    }

    @Test
    void failsLoudlyOnBrokenTemplates() {
        ChatTemplateException syntax = assertThrows(ChatTemplateException.class,
                () -> new ChatTemplate("{% for m in messages %}no end"));
        assertFalse(syntax.raisedByTemplate());
        assertTrue(syntax.getMessage().contains("endfor"), syntax.getMessage());
        ChatTemplateException method = assertThrows(ChatTemplateException.class,
                () -> render("{{ messages[0].content.no_such_method() }}", Map.of()));
        assertTrue(method.getMessage().contains("no_such_method"), method.getMessage());
        // an unknown attribute is undefined, as in Jinja2, not an error
        assertEquals("[]", render("[{{ messages[0].no_such_key }}]", Map.of()));
    }

    @Test
    void bindsTheTokenizersTokens() throws IOException {
        try (TextTokenizer t = TextTokenizer.load(TextTokenizerTest.fixture("bytelevel"))) {
            ChatTemplate template = ChatTemplate.of(t).orElseThrow();
            String prompt = template.render(CONVERSATION, true);
            assertTrue(prompt.startsWith("<|begin_of_text|><|start_header_id|>user"), prompt);
            int[] ids = t.encode(prompt, false); // the template wrote BOS itself
            assertEquals(325, ids[0]);
            assertFalse(ids[1] == 325);
            assertEquals(t.tokenId("<|start_header_id|>").getAsInt(), ids[1]);
        }
    }
}
