package dev.loragateway.gateway.text;

import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.lib.filter.Filter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The {@code tojson} filter as transformers defines it for chat templates: Python's {@code
 * json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)}, so {@code
 * {"a": 1, "b": [true, null]}} with ", " and ": " separators (Jinjava's own filter writes compact
 * Jackson JSON), {@code indent=N} for pretty printing, no HTML escaping, keys in insertion order.
 */
final class PyJsonFilter implements Filter {

    @Override
    public String getName() {
        return "tojson";
    }

    @Override
    public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
        return filter(var, interpreter, (Object[]) args, Map.of());
    }

    @Override
    public Object filter(
            Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
        Object indentArg = kwargs.containsKey("indent") ? kwargs.get("indent")
                : args.length > 0 ? args[0] : null;
        int indent = indentArg == null ? -1 : Integer.parseInt(indentArg.toString());
        boolean ensureAscii = truthy(kwargs.get("ensure_ascii"));
        boolean sortKeys = truthy(kwargs.get("sort_keys"));
        StringBuilder sb = new StringBuilder();
        write(sb, var, indent, 0, ensureAscii, sortKeys);
        return sb.toString();
    }

    private static boolean truthy(Object o) {
        return o != null && Boolean.parseBoolean(o.toString());
    }

    /** Python json.dumps; {@code indent < 0} means None (single line). */
    static void write(StringBuilder sb, Object v, int indent, int level, boolean ascii,
            boolean sortKeys) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof Boolean || v instanceof Integer || v instanceof Long
                || v instanceof Short || v instanceof Byte) {
            sb.append(v);
        } else if (v instanceof Number n) {
            double d = n.doubleValue();
            sb.append(Double.isNaN(d) ? "NaN" : Double.isInfinite(d)
                    ? (d > 0 ? "Infinity" : "-Infinity") : n.toString());
        } else if (v instanceof Map<?, ?> map) {
            List<Map.Entry<?, ?>> entries = new ArrayList<>(map.entrySet());
            if (sortKeys) {
                entries.sort((x, y) -> String.valueOf(x.getKey()).compareTo(
                        String.valueOf(y.getKey())));
            }
            if (entries.isEmpty()) {
                sb.append("{}");
                return;
            }
            sb.append('{');
            for (int i = 0; i < entries.size(); i++) {
                separator(sb, i, indent, level + 1);
                string(sb, Objects.toString(entries.get(i).getKey()), ascii);
                sb.append(": ");
                write(sb, entries.get(i).getValue(), indent, level + 1, ascii, sortKeys);
            }
            newline(sb, indent, level);
            sb.append('}');
        } else if (v instanceof Iterable<?> || v instanceof Object[]) {
            Iterable<?> items = v instanceof Object[] arr ? List.of(arr) : (Iterable<?>) v;
            int i = 0;
            sb.append('[');
            for (Object item : items) {
                separator(sb, i++, indent, level + 1);
                write(sb, item, indent, level + 1, ascii, sortKeys);
            }
            if (i == 0) {
                sb.append(']');
                return;
            }
            newline(sb, indent, level);
            sb.append(']');
        } else {
            string(sb, v.toString(), ascii);
        }
    }

    private static void separator(StringBuilder sb, int i, int indent, int level) {
        if (i > 0) {
            sb.append(indent < 0 ? ", " : ",");
        }
        newline(sb, indent, level);
    }

    private static void newline(StringBuilder sb, int indent, int level) {
        if (indent >= 0) {
            sb.append('\n').append(" ".repeat(indent * level));
        }
    }

    private static void string(StringBuilder sb, String s, boolean ascii) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                case '\b' -> sb.append("\\b");
                case '\f' -> sb.append("\\f");
                default -> {
                    if (c < 0x20 || (ascii && c > 0x7f)) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
                }
            }
        }
        sb.append('"');
    }
}
