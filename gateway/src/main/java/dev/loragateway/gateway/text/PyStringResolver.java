package dev.loragateway.gateway.text;

import java.beans.FeatureDescriptor;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;

/**
 * Gives Java strings in Jinjava the Python {@code str} methods chat templates call ({@code
 * content.strip()}, {@code role.startswith('tool')}, {@code text.split('</think>')[-1]}, ...) and
 * Python indexing ({@code s[0]}, {@code s[-1]}; slices {@code s[1:]} Jinjava does itself).
 *
 * <p>Placed first in Jinjava's resolver chain, it answers only for a {@link String} base and a
 * method name it knows (or an integer index); everything else falls through to Jinjava's own
 * resolvers. Working on plain strings, rather than wrapping them, keeps {@code ==}, {@code +},
 * filters and tests unchanged, and covers strings made inside the template (literals, {@code ~},
 * filter results) too.
 */
final class PyStringResolver extends ELResolver {

    @Override
    public Object getValue(ELContext context, Object base, Object property) {
        if (!(base instanceof String s) || property == null) {
            return null;
        }
        Integer index = parseIndex(property);
        if (index == null) {
            return null;
        }
        int i = index < 0 ? index + s.length() : index;
        context.setPropertyResolved(true);
        return i >= 0 && i < s.length() ? String.valueOf(s.charAt(i)) : null;
    }

    private static Integer parseIndex(Object property) {
        if (property instanceof Integer || property instanceof Long) {
            return ((Number) property).intValue();
        }
        if (property instanceof String p && p.matches("-?\\d{1,9}")) {
            return Integer.parseInt(p);
        }
        return null;
    }

    @Override
    public Object invoke(
            ELContext context, Object base, Object method, Class<?>[] types, Object[] params) {
        if (!(base instanceof String s) || method == null) {
            return null;
        }
        Object[] args = params == null ? new Object[0] : params;
        Object result = call(s, method.toString(), args);
        if (result == NOT_A_METHOD) {
            return null;
        }
        context.setPropertyResolved(true);
        return result;
    }

    private static final Object NOT_A_METHOD = new Object();

    private static Object call(String s, String name, Object[] a) {
        switch (name) {
            case "startswith":
                return matchesAny(s, a, true);
            case "endswith":
                return matchesAny(s, a, false);
            case "strip":
                return rstrip(lstrip(s, arg(a, 0)), arg(a, 0));
            case "lstrip":
                return lstrip(s, arg(a, 0));
            case "rstrip":
                return rstrip(s, arg(a, 0));
            case "upper":
                return s.toUpperCase(Locale.ROOT);
            case "lower":
                return s.toLowerCase(Locale.ROOT);
            case "title":
                return title(s);
            case "capitalize":
                return s.isEmpty()
                        ? s
                        : s.substring(0, 1).toUpperCase(Locale.ROOT)
                                + s.substring(1).toLowerCase(Locale.ROOT);
            case "split":
                return split(s, arg(a, 0), a.length > 1 ? ((Number) a[1]).intValue() : -1);
            case "rsplit":
                return rsplit(s, arg(a, 0), a.length > 1 ? ((Number) a[1]).intValue() : -1);
            case "splitlines":
                return splitlines(s);
            case "replace":
                return replace(s, String.valueOf(a[0]), String.valueOf(a[1]),
                        a.length > 2 ? ((Number) a[2]).intValue() : -1);
            case "find":
                return (long) s.indexOf(String.valueOf(a[0]));
            case "rfind":
                return (long) s.lastIndexOf(String.valueOf(a[0]));
            case "count":
                return count(s, String.valueOf(a[0]));
            case "join":
                return join(s, a[0]);
            case "removeprefix":
                return s.startsWith(String.valueOf(a[0]))
                        ? s.substring(String.valueOf(a[0]).length()) : s;
            case "removesuffix":
                String suffix = String.valueOf(a[0]);
                return s.endsWith(suffix) && !suffix.isEmpty()
                        ? s.substring(0, s.length() - suffix.length()) : s;
            case "isdigit":
                return !s.isEmpty() && s.chars().allMatch(Character::isDigit);
            case "isalpha":
                return !s.isEmpty() && s.chars().allMatch(Character::isLetter);
            case "isspace":
                return !s.isEmpty() && s.chars().allMatch(PyStringResolver::isSpace);
            default:
                return NOT_A_METHOD;
        }
    }

    private static String arg(Object[] a, int i) {
        return a.length > i && a[i] != null ? a[i].toString() : null;
    }

    /** Python: a prefix may be one string or a tuple (here any collection) of strings. */
    private static boolean matchesAny(String s, Object[] a, boolean prefix) {
        if (a.length == 0) {
            throw new IllegalArgumentException((prefix ? "startswith" : "endswith")
                    + "() takes at least 1 argument (0 given)");
        }
        Iterable<?> options = a[0] instanceof Collection<?> c ? c : List.of(String.valueOf(a[0]));
        for (Object o : options) {
            String p = String.valueOf(o);
            if (prefix ? s.startsWith(p) : s.endsWith(p)) {
                return true;
            }
        }
        return false;
    }

    static boolean isSpace(int c) {
        return Character.isWhitespace(c) || Character.isSpaceChar(c) || c == 0x85;
    }

    private static boolean strippable(char c, String chars) {
        return chars == null ? isSpace(c) : chars.indexOf(c) >= 0;
    }

    private static String lstrip(String s, String chars) {
        int i = 0;
        while (i < s.length() && strippable(s.charAt(i), chars)) {
            i++;
        }
        return s.substring(i);
    }

    private static String rstrip(String s, String chars) {
        int j = s.length();
        while (j > 0 && strippable(s.charAt(j - 1), chars)) {
            j--;
        }
        return s.substring(0, j);
    }

    private static String title(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        boolean prevLetter = false;
        for (char c : s.toCharArray()) {
            sb.append(prevLetter ? Character.toLowerCase(c) : Character.toUpperCase(c));
            prevLetter = Character.isLetter(c);
        }
        return sb.toString();
    }

    /** Python str.split: no separator splits on whitespace runs and drops empty parts. */
    private static List<String> split(String s, String sep, int maxSplit) {
        List<String> out = new ArrayList<>();
        if (sep == null) {
            int i = 0;
            while (i < s.length()) {
                while (i < s.length() && isSpace(s.charAt(i))) {
                    i++;
                }
                if (i == s.length()) {
                    break;
                }
                if (maxSplit >= 0 && out.size() == maxSplit) {
                    out.add(rstrip(s.substring(i), null));
                    break;
                }
                int j = i;
                while (j < s.length() && !isSpace(s.charAt(j))) {
                    j++;
                }
                out.add(s.substring(i, j));
                i = j;
            }
            return out;
        }
        if (sep.isEmpty()) {
            throw new IllegalArgumentException("empty separator");
        }
        int from = 0;
        while (maxSplit < 0 || out.size() < maxSplit) {
            int at = s.indexOf(sep, from);
            if (at < 0) {
                break;
            }
            out.add(s.substring(from, at));
            from = at + sep.length();
        }
        out.add(s.substring(from));
        return out;
    }

    private static List<String> rsplit(String s, String sep, int maxSplit) {
        if (maxSplit < 0 || sep == null) {
            return split(s, sep, maxSplit); // same result without a limit (whitespace: approx.)
        }
        List<String> out = new ArrayList<>();
        int end = s.length();
        while (out.size() < maxSplit) {
            int at = s.lastIndexOf(sep, end - sep.length());
            if (at < 0) {
                break;
            }
            out.add(0, s.substring(at + sep.length(), end));
            end = at;
        }
        out.add(0, s.substring(0, end));
        return out;
    }

    private static List<String> splitlines(String s) {
        List<String> out = new ArrayList<>(List.of(s.split("\\r\\n|\\r|\\n", -1)));
        if (out.get(out.size() - 1).isEmpty()) {
            out.remove(out.size() - 1); // a final line break opens no new line
        }
        return out;
    }

    private static String replace(String s, String old, String rep, int count) {
        if (count < 0) {
            return s.replace(old, rep);
        }
        StringBuilder sb = new StringBuilder();
        int from = 0;
        for (int n = 0; n < count; n++) {
            int at = s.indexOf(old, from);
            if (at < 0 || old.isEmpty()) {
                break;
            }
            sb.append(s, from, at).append(rep);
            from = at + old.length();
        }
        return sb.append(s.substring(from)).toString();
    }

    private static long count(String s, String sub) {
        if (sub.isEmpty()) {
            return s.length() + 1L;
        }
        long n = 0;
        for (int at = s.indexOf(sub); at >= 0; at = s.indexOf(sub, at + sub.length())) {
            n++;
        }
        return n;
    }

    private static String join(String sep, Object items) {
        Iterator<?> it = items instanceof Iterable<?> i ? i.iterator()
                : items instanceof Object[] arr ? List.of(arr).iterator()
                : List.of(String.valueOf(items)).iterator();
        StringBuilder sb = new StringBuilder();
        while (it.hasNext()) {
            sb.append(it.next());
            if (it.hasNext()) {
                sb.append(sep);
            }
        }
        return sb.toString();
    }

    @Override
    public Class<?> getType(ELContext context, Object base, Object property) {
        return null;
    }

    @Override
    public void setValue(ELContext context, Object base, Object property, Object value) {}

    @Override
    public boolean isReadOnly(ELContext context, Object base, Object property) {
        return true;
    }

    @Override
    public Iterator<FeatureDescriptor> getFeatureDescriptors(ELContext context, Object base) {
        return null;
    }

    @Override
    public Class<?> getCommonPropertyType(ELContext context, Object base) {
        return base instanceof String ? Integer.class : null;
    }
}
