package dev.loragateway.gateway.text;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import java.time.Clock;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import jinjava.javax.el.CompositeELResolver;

/**
 * Renders a Hugging Face {@code chat_template} (Jinja) as {@code transformers}'
 * {@code apply_chat_template(messages, add_generation_prompt=...)} does, with Jinjava.
 *
 * <p>transformers renders with {@code ImmutableSandboxedEnvironment(trim_blocks=True,
 * lstrip_blocks=True)} and adds {@code raise_exception}, {@code strftime_now} and a {@code tojson}
 * filter ({@code json.dumps}, ", " separators). Jinjava lacks those and Python's {@code str}
 * methods; this class adds them:
 *
 * <ul>
 *   <li>{@code raise_exception(msg)}: rendering fails with a {@link ChatTemplateException} whose
 *       message is {@code msg} (the HTTP layer's 400).
 *   <li>{@code strftime_now(fmt)}: the injected {@link Clock}'s local time; {@code strftime_now is
 *       defined} is true, as in transformers (Llama 3.1+ templates test it).
 *   <li>{@code .startswith() .endswith() .strip() .lstrip() .rstrip() .split() .replace()
 *       .upper() .lower() ...} and {@code s[i]}: see {@link PyStringResolver}.
 *   <li>{@code tojson}: see {@link PyJsonFilter}.
 *   <li>{@code not} precedence and {@code seq[::-1]}: rewritten before parsing, see {@link
 *       TemplateRewriter}.
 *   <li>booleans print as {@code True}/{@code False}: see {@link PyInterpreterFactory}.
 * </ul>
 *
 * <p>Everything else (whitespace control {@code {%- -%}}, {@code loop.first/last/index0},
 * {@code namespace()}, {@code set}, macros, {@code is string/mapping/defined} tests, {@code in})
 * Jinjava does as Jinja2 does once its legacy overrides are set (without them it ignores {@code
 * {{-}} and prints {@code true}). Known differences: {@code {{ none }}} renders "" (Python:
 * "None"); a dict literal ending in {@code }}} inside {@code {{ }}} ends the tag early; {@code
 * loop.previtem/nextitem} are undefined. {@code {% generation %}} blocks render their body.
 * Message content is never interpreted as a template (Jinjava's default "nested interpretation"
 * would render a user's {@code {{ }}}: switched off).
 *
 * <p>Fatal Jinjava errors (syntax, unknown method, ...) fail the render with a {@link
 * ChatTemplateException}; warnings (an unknown attribute, which Jinja2 renders as undefined) do
 * not. Instances are immutable and thread-safe.
 */
public final class ChatTemplate {

    private static final long MAX_OUTPUT_CHARS = 64L << 20;

    private final String source;
    private final String template;
    private final String bosToken;
    private final String eosToken;
    private final Clock clock;
    private final Jinjava jinjava;

    /** A template with no bound BOS/EOS strings, rendering times with the system clock. */
    public ChatTemplate(String template) {
        this(template, null, null, Clock.systemDefaultZone());
    }

    /**
     * A template with the tokenizer's BOS/EOS strings bound (either may be null) and the clock that
     * {@code strftime_now} reads.
     *
     * @throws ChatTemplateException when the template does not parse
     */
    public ChatTemplate(String template, String bosToken, String eosToken, Clock clock) {
        this.source = template;
        this.template = TemplateRewriter.rewrite(template);
        this.bosToken = bosToken;
        this.eosToken = eosToken;
        this.clock = clock;
        this.jinjava = newJinjava();
        checkSyntax();
    }

    /**
     * The tokenizer's chat template with its BOS/EOS strings bound, if the model has a template.
     *
     * @throws ChatTemplateException when the template does not parse
     */
    public static Optional<ChatTemplate> of(TextTokenizer tokenizer) {
        return tokenizer.chatTemplate().map(t -> new ChatTemplate(t,
                tokenizer.bosToken().orElse(null), tokenizer.eosToken().orElse(null),
                Clock.systemDefaultZone()));
    }

    /** The template text as given. */
    public String source() {
        return source;
    }

    /** Renders with the bound BOS/EOS strings. */
    public String render(List<? extends Map<String, ?>> messages, boolean addGenerationPrompt) {
        return render(messages, addGenerationPrompt, bosToken, eosToken, Map.of());
    }

    /**
     * Renders {@code messages} (maps with at least {@code role} and {@code content}).
     *
     * @param bosToken the string {@code bos_token} renders as (null: undefined)
     * @param eosToken the string {@code eos_token} renders as (null: undefined)
     * @throws ChatTemplateException when the template raises or rendering fails
     */
    public String render(
            List<? extends Map<String, ?>> messages,
            boolean addGenerationPrompt,
            String bosToken,
            String eosToken) {
        return render(messages, addGenerationPrompt, bosToken, eosToken, Map.of());
    }

    /**
     * Renders with further template variables, e.g. {@code tools}, {@code date_string}, {@code
     * enable_thinking}; {@code messages}, {@code add_generation_prompt} and the two tokens given
     * here win over entries of the same name.
     *
     * @throws ChatTemplateException when the template raises or rendering fails
     */
    public String render(
            List<? extends Map<String, ?>> messages,
            boolean addGenerationPrompt,
            String bosToken,
            String eosToken,
            Map<String, ?> extraVariables) {
        Map<String, Object> vars = new HashMap<>(extraVariables);
        vars.put("messages", messages);
        vars.put("add_generation_prompt", addGenerationPrompt);
        putIfPresent(vars, "bos_token", bosToken);
        putIfPresent(vars, "eos_token", eosToken);
        vars.put("raise_exception", "<function raise_exception>"); // for `is defined`
        vars.put("strftime_now", "<function strftime_now>");
        vars.put(TemplateFunctions.CLOCK_VARIABLE, clock);
        RenderResult result;
        try {
            result = jinjava.renderForResult(template, vars);
        } catch (RuntimeException e) {
            throw failure(e.getMessage(), e);
        }
        for (TemplateError error : result.getErrors()) { // the template's own message wins
            TemplateFunctions.RaisedException raised = raisedIn(error.getException());
            if (raised != null) {
                throw new ChatTemplateException(raised.getMessage(), true, raised);
            }
        }
        for (TemplateError error : result.getErrors()) {
            if (error.getSeverity() == TemplateError.ErrorType.FATAL) {
                throw failure(describe(error), error.getException());
            }
        }
        return result.getOutput();
    }

    private static void putIfPresent(Map<String, Object> vars, String key, String value) {
        if (value != null) {
            vars.put(key, value);
        }
    }

    private Jinjava newJinjava() {
        CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new PyStringResolver());
        resolver.add(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_ONLY);
        JinjavaConfig config = JinjavaConfig.newBuilder()
                .withTrimBlocks(true)
                .withLstripBlocks(true)
                // Jinjava would drop a final newline of the *output* ('<|im_start|>assistant\n');
                // Jinja2 drops one of the template *source* (TemplateRewriter does that)
                .withKeepTrailingNewline(true)
                .withFailOnUnknownTokens(false)
                .withNestedInterpretationEnabled(false) // never render {{ }} inside content
                .withInterperterFactory(new PyInterpreterFactory())
                .withElResolver(resolver)
                .withMaxOutputSize(MAX_OUTPUT_CHARS)
                .withLegacyOverrides(LegacyOverrides.newBuilder()
                        .withUseTrimmingForNotesAndExpressions(true) // {{- x -}} and {#- -#}
                        .withParseWhitespaceControlStrictly(true)
                        .withUsePyishObjectMapper(true) // lists print as ['a', 1]
                        .withEvaluateMapKeys(true) // {key: v} uses the variable key
                        .withKeepNullableLoopValues(true)
                        .withHandleBackslashInQuotesOnly(true)
                        .build())
                .build();
        Jinjava j = new Jinjava(config);
        j.getGlobalContext().registerFunction(new ELFunctionDefinition(
                "", "raise_exception", TemplateFunctions.class, "raiseException", Object.class));
        j.getGlobalContext().registerFunction(new ELFunctionDefinition(
                "", "strftime_now", TemplateFunctions.class, "strftimeNow", String.class));
        j.getGlobalContext().registerFilter(new PyJsonFilter());
        j.getGlobalContext().registerTag(new GenerationTag());
        return j;
    }

    private void checkSyntax() {
        JinjavaInterpreter interpreter = jinjava.newInterpreter();
        try {
            interpreter.parse(template);
        } catch (RuntimeException e) {
            throw failure("chat template does not parse: " + e.getMessage(), e);
        }
        for (TemplateError error : interpreter.getErrors()) {
            if (error.getSeverity() == TemplateError.ErrorType.FATAL) {
                throw failure("chat template does not parse: " + describe(error),
                        error.getException());
            }
        }
    }

    private static TemplateFunctions.RaisedException raisedIn(Throwable t) {
        for (int depth = 0; t != null && depth < 16; depth++, t = t.getCause()) {
            if (t instanceof TemplateFunctions.RaisedException raised) {
                return raised;
            }
        }
        return null;
    }

    private static String describe(TemplateError error) {
        return "chat template error at line " + error.getLineno() + ": " + error.getMessage();
    }

    private static ChatTemplateException failure(String message, Throwable cause) {
        return new ChatTemplateException(message, false, cause);
    }
}
