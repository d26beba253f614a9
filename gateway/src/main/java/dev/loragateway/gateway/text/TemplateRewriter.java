package dev.loragateway.gateway.text;

import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Rewrites the Jinja2 syntax that Jinjava parses differently, inside {@code {{ }}} and {@code {% %}}
 * only (text, comments and {@code raw} blocks stay as they are):
 *
 * <ul>
 *   <li>One final line break of the template is dropped, as Jinja2 does by default.
 *   <li>{@code not} precedence. In Jinja2 {@code not} binds looser than comparisons and tests:
 *       {@code not x is defined} is {@code not (x is defined)}, {@code not 'a' in b} is {@code
 *       not ('a' in b)}. Jinjava applies {@code not} to the operand ({@code (not x) is defined},
 *       always true), which breaks Llama 3.1's {@code {% if not date_string is defined %}} and
 *       {@code not tools is none}. We wrap the operand: {@code not (x is defined)}, up to the next
 *       {@code and}/{@code or}/{@code if}/{@code else} or closing bracket or comma at the same
 *       depth. ({@code is not} and {@code not in} are left alone.)
 *   <li>{@code seq[::-1]} (a slice step Jinjava cannot parse) becomes {@code (seq|reverse|list)}.
 *   <li>{@code {% for x in seq if cond %}}: see {@link #filteredFor}.
 * </ul>
 */
final class TemplateRewriter {

    private static final Pattern REVERSE_SLICE =
            Pattern.compile("([A-Za-z_][A-Za-z0-9_.]*(?:\\[[^\\[\\]]+\\])*)\\[::-1\\]");
    private static final Pattern RAW_START = Pattern.compile("\\{%-?\\s*raw\\s*-?%\\}");
    private static final Pattern RAW_END = Pattern.compile("\\{%-?\\s*endraw\\s*-?%\\}");
    private static final Set<String> STOP_WORDS = Set.of("and", "or", "if", "else");

    private TemplateRewriter() {}

    static String rewrite(String source) {
        // Jinja2 (keep_trailing_newline=False) drops one final line break of the source
        String template = source.endsWith("\r\n") ? source.substring(0, source.length() - 2)
                : source.endsWith("\n") || source.endsWith("\r")
                        ? source.substring(0, source.length() - 1) : source;
        int forCount = 0;
        StringBuilder out = new StringBuilder(template.length() + 16);
        int i = 0;
        while (i < template.length()) {
            int open = template.indexOf('{', i);
            if (open < 0 || open + 1 >= template.length()) {
                out.append(template, i, template.length());
                break;
            }
            char kind = template.charAt(open + 1);
            if (kind == '#') { // comment: copy through #}
                int end = template.indexOf("#}", open + 2);
                end = end < 0 ? template.length() : end + 2;
                out.append(template, i, end);
                i = end;
                continue;
            }
            if (kind != '{' && kind != '%') {
                out.append(template, i, open + 1);
                i = open + 1;
                continue;
            }
            Matcher raw = RAW_START.matcher(template).region(open, template.length());
            if (kind == '%' && raw.lookingAt()) {
                Matcher rawEnd = RAW_END.matcher(template);
                int end = rawEnd.find(raw.end()) ? rawEnd.end() : template.length();
                out.append(template, i, end);
                i = end;
                continue;
            }
            int close = closeOf(template, open + 2, kind == '{' ? "}}" : "%}");
            String content = rewriteExpression(template.substring(open + 2, close));
            out.append(template, i, open);
            out.append(kind == '%' ? filteredFor(content, forCount++) : "{{" + content);
            i = close;
        }
        return out.toString();
    }

    /**
     * {@code {% for x in seq if cond %}} (Jinjava has no loop filter; it would read {@code seq if
     * cond} as a conditional expression) becomes a loop that collects the matching items followed
     * by a loop over them, so {@code loop.index/first/last} count the filtered items as in Jinja2:
     * {@code {% set f = [] %}{% for x in seq %}{% if cond %}{% do f.append(x) %}{% endif %}{%
     * endfor %}{% for x in f %}}. Returns the tag with its opening delimiter, without the closing.
     */
    private static String filteredFor(String content, int n) {
        Matcher m = FOR_TAG.matcher(content);
        if (!m.matches()) {
            return "{%" + content;
        }
        int split = topLevelWord(m.group(4), "if");
        if (split < 0) {
            return "{%" + content;
        }
        String var = m.group(3);
        if (!var.matches("[A-Za-z_][A-Za-z0-9_]*")) {
            return "{%" + content; // a tuple target (k, v): not rewritten
        }
        String seq = m.group(4).substring(0, split).strip();
        String cond = m.group(4).substring(split + 2).strip();
        String list = "__lora_gateway_for_" + n;
        return "{%" + m.group(1) + " set " + list + " = [] %}{% for " + var + " in " + seq
                + " %}{% if " + cond + " %}{% do " + list + ".append(" + var
                + ") %}{% endif %}{% endfor %}{% for " + var + " in " + list + m.group(5);
    }

    private static final Pattern FOR_TAG =
            Pattern.compile("(-?)(\\s*)for\\s+(.+?)\\s+in\\s+(.+?)(\\s*-?)", Pattern.DOTALL);

    /** Index of a word at bracket depth 0 outside strings, or -1. */
    private static int topLevelWord(String e, String word) {
        int depth = 0;
        for (int i = 0; i < e.length(); i++) {
            char c = e.charAt(i);
            if (c == '\'' || c == '"') {
                i = skipString(e, i) - 1;
            } else if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if (c == ')' || c == ']' || c == '}') {
                depth--;
            } else if (depth == 0 && isWordAt(e, i, word)) {
                return i;
            }
        }
        return -1;
    }

    /** Index of the closing delimiter, skipping quoted strings; the end if there is none. */
    private static int closeOf(String t, int from, String delimiter) {
        char quote = 0;
        for (int i = from; i < t.length(); i++) {
            char c = t.charAt(i);
            if (quote != 0) {
                if (c == '\\') {
                    i++;
                } else if (c == quote) {
                    quote = 0;
                }
            } else if (c == '\'' || c == '"') {
                quote = c;
            } else if (t.startsWith(delimiter, i)) {
                return i;
            }
        }
        return t.length();
    }

    static String rewriteExpression(String expr) {
        String e = REVERSE_SLICE.matcher(expr).replaceAll(
                r -> Matcher.quoteReplacement("(" + r.group(1) + "|reverse|list)"));
        return wrapNot(e);
    }

    /** Wraps the operand of each prefix {@code not} in parentheses (see class comment). */
    private static String wrapNot(String e) {
        StringBuilder out = new StringBuilder(e.length() + 8);
        int i = 0;
        while (i < e.length()) {
            char c = e.charAt(i);
            if (c == '\'' || c == '"') {
                int end = skipString(e, i);
                out.append(e, i, end);
                i = end;
                continue;
            }
            if (isWordAt(e, i, "not") && !precededBy(e, i, "is") && !followedBy(e, i + 3, "in")) {
                int start = i + 3;
                int end = operandEnd(e, start);
                out.append("not (").append(wrapNot(e.substring(start, end).strip())).append(')');
                if (end < e.length() && !Character.isWhitespace(e.charAt(end))) {
                    out.append(' ');
                }
                i = end;
                continue;
            }
            out.append(c);
            i++;
        }
        return out.toString();
    }

    private static int operandEnd(String e, int from) {
        int depth = 0;
        int i = from;
        while (i < e.length()) {
            char c = e.charAt(i);
            if (c == '\'' || c == '"') {
                i = skipString(e, i);
                continue;
            }
            if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if (c == ')' || c == ']' || c == '}') {
                if (depth == 0) {
                    return i;
                }
                depth--;
            } else if (depth == 0 && c == ',') {
                return i;
            } else if (depth == 0 && Character.isLetter(c) && !identChar(e, i - 1)) {
                for (String stop : STOP_WORDS) {
                    if (isWordAt(e, i, stop)) {
                        return i;
                    }
                }
            }
            i++;
        }
        // a trailing whitespace-control '-' belongs to the delimiter, not the operand
        int end = e.length();
        String tail = e.stripTrailing();
        return tail.endsWith("-") && depth == 0 ? tail.length() - 1 : end;
    }

    private static int skipString(String e, int start) {
        char quote = e.charAt(start);
        for (int i = start + 1; i < e.length(); i++) {
            if (e.charAt(i) == '\\') {
                i++;
            } else if (e.charAt(i) == quote) {
                return i + 1;
            }
        }
        return e.length();
    }

    private static boolean identChar(String e, int i) {
        return i >= 0 && i < e.length()
                && (Character.isLetterOrDigit(e.charAt(i)) || e.charAt(i) == '_'
                        || e.charAt(i) == '.');
    }

    private static boolean isWordAt(String e, int i, String word) {
        return e.startsWith(word, i) && !identChar(e, i - 1) && !identChar(e, i + word.length());
    }

    private static boolean precededBy(String e, int i, String word) {
        int j = i - 1;
        while (j >= 0 && Character.isWhitespace(e.charAt(j))) {
            j--;
        }
        int start = j - word.length() + 1;
        return start >= 0 && isWordAt(e, start, word);
    }

    private static boolean followedBy(String e, int i, String word) {
        int j = i;
        while (j < e.length() && Character.isWhitespace(e.charAt(j))) {
            j++;
        }
        return isWordAt(e, j, word);
    }
}
