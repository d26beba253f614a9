package dev.loragateway.loadtests;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.scheduler.workload.Workload;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;

/**
 * What one Gatling run sends: where to ({@code url}, API keys per tenant from a {@code --api-keys}
 * file), the traffic ({@link Workload}), which endpoints and whether streamed, and how the load is
 * offered: open model (the trace's own arrival times for {@code seconds}) or closed model
 * ({@code concurrency} users, each sending its next request when the last one ends).
 *
 * <p>Gatling builds a simulation with a no-argument constructor, so a spec travels to it as system
 * properties ({@link #toProperties}, {@link #fromProperties}); the same option names are the
 * command line's.
 *
 * @param url         the gateway's base URL ({@code http://127.0.0.1:8000})
 * @param keys        tenant id → API key (the tenant's first key); empty: no Authorization header
 * @param keysFile    where {@code keys} came from, or null
 * @param baseModel   the model id of a request whose trace entry has no adapter ({@code demo})
 * @param apis        endpoints, taken in turn by trace index: {@code completions}, {@code chat}
 * @param streams     streamed or not, taken in turn by trace index (after the endpoint)
 * @param vocab       prompt token ids are drawn from [4, vocab) (skipping the usual special ids)
 * @param seconds     how long the run offers load
 * @param concurrency 0: open model; otherwise closed-model users
 */
public record LoadSpec(URI url, Map<String, String> keys, Path keysFile, Workload workload, String baseModel,
                       List<String> apis, List<Boolean> streams, int vocab, double seconds, int concurrency) {

    /** The load options and their defaults (the workload's are {@link Workload#DEFAULTS}). */
    public static final Map<String, String> DEFAULTS;

    static {
        Map<String, String> d = new LinkedHashMap<>();
        d.put("url", "http://127.0.0.1:8000");
        d.put("keys", "");
        d.put("model", "demo");
        d.put("api", "completions");
        d.put("stream", "true");
        d.put("vocab", "512");
        d.put("seconds", "20");
        d.put("concurrency", "0");
        DEFAULTS = java.util.Collections.unmodifiableMap(d);
    }

    private static final String PREFIX = "lora.load.";
    private static final ObjectMapper JSON = new ObjectMapper();

    public LoadSpec {
        keys = Map.copyOf(keys);
        apis = List.copyOf(apis);
        streams = List.copyOf(streams);
        if (vocab < 5) throw new IllegalArgumentException("vocab must be at least 5, got " + vocab);
        if (!(seconds > 0) || !Double.isFinite(seconds)) throw new IllegalArgumentException("seconds must be > 0, got " + seconds);
        if (concurrency < 0) throw new IllegalArgumentException("concurrency must be >= 0, got " + concurrency);
    }

    /**
     * A spec from option values by name: {@link #DEFAULTS}' keys and the workload's
     * ({@link Workload#DEFAULTS}); a missing one takes its default.
     *
     * @throws IllegalArgumentException naming the option and the bad value
     */
    public static LoadSpec of(Map<String, String> options) {
        Map<String, String> workload = new LinkedHashMap<>();
        for (Map.Entry<String, String> e : options.entrySet()) {
            if (Workload.DEFAULTS.containsKey(e.getKey())) workload.put(e.getKey(), e.getValue());
            else if (!DEFAULTS.containsKey(e.getKey()))
                throw new IllegalArgumentException("unknown load option '" + e.getKey() + "' (known: "
                    + String.join(", ", DEFAULTS.keySet()) + ", " + String.join(", ", Workload.DEFAULTS.keySet()) + ")");
        }
        java.util.function.Function<String, String> v = k -> options.getOrDefault(k, DEFAULTS.get(k)).trim();
        URI url;
        try {
            url = URI.create(v.apply("url").replaceAll("/+$", ""));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("url: not a URL: '" + v.apply("url") + "'");
        }
        if (!"http".equals(url.getScheme()) && !"https".equals(url.getScheme()) || url.getHost() == null)
            throw new IllegalArgumentException("url must be http(s)://HOST[:PORT], got '" + v.apply("url") + "'");
        Path keysFile = v.apply("keys").isEmpty() ? null : Path.of(v.apply("keys"));
        List<String> apis = switch (v.apply("api")) {
            case "completions" -> List.of("completions");
            case "chat" -> List.of("chat");
            case "both" -> List.of("completions", "chat");
            default -> throw new IllegalArgumentException("api must be completions, chat or both, got '" + v.apply("api") + "'");
        };
        List<Boolean> streams = switch (v.apply("stream")) {
            case "true" -> List.of(true);
            case "false" -> List.of(false);
            case "both" -> List.of(true, false);
            default -> throw new IllegalArgumentException("stream must be true, false or both, got '" + v.apply("stream") + "'");
        };
        return new LoadSpec(url, keysFile == null ? Map.of() : readKeys(keysFile), keysFile, Workload.of(workload),
            v.apply("model"), apis, streams, integer("vocab", v.apply("vocab")), number("seconds", v.apply("seconds")),
            integer("concurrency", v.apply("concurrency")));
    }

    /** The same spec at another arrival rate (the capacity search's step). */
    public LoadSpec withRate(double rate) {
        return new LoadSpec(url, keys, keysFile, workload.withRate(rate), baseModel, apis, streams, vocab, seconds, concurrency);
    }

    public LoadSpec withSeconds(double s) {
        return new LoadSpec(url, keys, keysFile, workload, baseModel, apis, streams, vocab, s, concurrency);
    }

    /** The option values that give this spec back through {@link #of}. */
    public Map<String, String> options() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("url", url.toString());
        m.put("keys", keysFile == null ? "" : keysFile.toString());
        m.put("model", baseModel);
        m.put("api", apis.size() == 2 ? "both" : apis.get(0));
        m.put("stream", streams.size() == 2 ? "both" : streams.get(0).toString());
        m.put("vocab", Integer.toString(vocab));
        m.put("seconds", Double.toString(seconds));
        m.put("concurrency", Integer.toString(concurrency));
        m.putAll(workload.options());
        return m;
    }

    /** {@link #options()} as {@code lora.load.NAME} properties, for the simulation's JVM. */
    public Map<String, String> toProperties() {
        Map<String, String> p = new LinkedHashMap<>();
        options().forEach((k, val) -> p.put(PREFIX + k, val));
        return p;
    }

    /** The spec in {@code lora.load.*} properties (a run's, or {@code -Dlora.load.url=...} by hand). */
    public static LoadSpec fromProperties(Properties props) {
        Map<String, String> m = new LinkedHashMap<>();
        for (String name : props.stringPropertyNames())
            if (name.startsWith(PREFIX)) m.put(name.substring(PREFIX.length()), props.getProperty(name));
        // the contract's short names for a hand-started simulation
        if (props.getProperty("gateway.url") != null) m.putIfAbsent("url", props.getProperty("gateway.url"));
        if (props.getProperty("gateway.keys") != null) m.putIfAbsent("keys", props.getProperty("gateway.keys"));
        return of(m);
    }

    /** The first key of each tenant in a {@code serve --api-keys} file. */
    static Map<String, String> readKeys(Path file) {
        JsonNode root;
        try {
            root = JSON.readTree(Files.readString(file));
        } catch (IOException e) {
            throw new IllegalArgumentException("keys: cannot read '" + file + "': " + e.getMessage());
        }
        Map<String, String> keys = new LinkedHashMap<>();
        for (JsonNode t : root.path("tenants")) {
            String id = t.path("id").asText("");
            JsonNode first = t.path("keys").path(0);
            if (!id.isEmpty() && first.isTextual()) keys.put(id, first.asText());
        }
        if (keys.isEmpty()) throw new IllegalArgumentException("keys: '" + file + "' names no tenant with a key ({\"tenants\": [{\"id\", \"keys\"}]})");
        return keys;
    }

    private static int integer(String name, String value) {
        try {
            return Integer.parseInt(value);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(name + " must be an integer, got '" + value + "'");
        }
    }

    private static double number(String name, String value) {
        try {
            return Double.parseDouble(value);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(name + " must be a number, got '" + value + "'");
        }
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "%s %s", url, options());
    }
}
