package dev.loragateway.adapters;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;
import java.util.stream.Collectors;

/**
 * A PEFT LoRA {@code adapter_config.json}, parsed and checked, answering for each module key of
 * the base model (e.g. {@code model.layers.3.self_attn.q_proj}) whether it is targeted and with
 * which rank and scaling. The matching rules are PEFT's:
 *
 * <ul>
 *   <li>{@code target_modules} as a list: a key is targeted when it equals an entry or ends with
 *       {@code "." + entry}; then {@code layers_to_transform} (an int or a list) restricts the layer
 *       index, found with {@code layers_pattern} ({@code .*\.PATTERN\.(\d+)\.}) or, without one,
 *       {@code .*\.[^.]*\.(\d+)\.}.
 *   <li>{@code target_modules} as a string: {@code "all-linear"} is all seven projections;
 *       anything else is a regex that must match the whole key ({@code layers_to_transform} is
 *       then ignored, as in PEFT).
 *   <li>{@code rank_pattern} / {@code alpha_pattern}: the first key {@code P}, in file order, for
 *       which {@code (.*\.)?(P)} matches the whole module key gives that module's r / alpha
 *       (PEFT's {@code get_pattern_key}); otherwise {@code r} / {@code lora_alpha}.
 *   <li>Scaling is {@code alpha / r}, or {@code alpha / sqrt(r)} with {@code use_rslora}.
 * </ul>
 *
 * <p>Every number in the file must be finite and in range, or the adapter is refused naming the
 * field, its value and the range: ranks ({@code r}, {@code rank_pattern} values) are positive
 * integers (at most {@code --max-lora-rank}, checked by the reader); alphas ({@code lora_alpha},
 * {@code alpha_pattern} values) lie in ±{@value #MAX_ALPHA}; {@code lora_dropout} in [0, 1];
 * {@code layers_to_transform} entries are layer indices. The alpha bound is the scaling bound:
 * with {@code r >= 1}, {@code |alpha / r|} and {@code |alpha / sqrt(r)|} are at most
 * {@code |alpha|}, so no module's update is scaled by more than {@value #MAX_ALPHA}. Real adapters
 * use alphas from 1 to about a thousand (PEFT's default 8; 16, 32, 64; {@code 2·r} up to
 * {@code r = 512}), so the bound leaves ten times the largest seen, while an alpha like
 * {@code 1e308} (accepted before) overflowed float32 into NaN logits. Negative and zero alphas
 * are kept: PEFT accepts them (a negated or a null update).
 *
 * <p>Missing {@code target_modules} means {@code ["q_proj", "v_proj"]}, PEFT's default for the
 * Llama family. {@code fan_in_fan_out} is accepted and ignored: PEFT turns it off for
 * {@code nn.Linear}, the only layer type these projections have. Features whose adapters would not
 * compute {@code W·x + scaling·B·A·x} on the unmodified base (DoRA, trained biases,
 * {@code modules_to_save}, PiSSA/OLoRA/CorDA initialisations that rewrite the base weights, ...)
 * are refused by name.
 *
 * @param r the default rank
 * @param loraAlpha the default alpha
 * @param targetModules target entries when given as a list (or "all-linear"), else empty
 * @param targetRegex the full-match regex when {@code target_modules} is a string, else null
 * @param excludeModules {@code exclude_modules} entries when given as a list, else empty
 * @param excludeRegex {@code exclude_modules} as a regex, else null
 * @param useRslora rank-stabilised scaling {@code alpha / sqrt(r)}
 * @param rankPattern pattern → rank, in file order
 * @param alphaPattern pattern → alpha, in file order
 * @param layersToTransform layer indices to adapt; empty means all
 * @param layersPattern names of the layer list in module keys; empty means any
 */
public record AdapterConfig(int r, double loraAlpha, List<String> targetModules, String targetRegex,
                            List<String> excludeModules, String excludeRegex, boolean useRslora,
                            Map<String, Integer> rankPattern, Map<String, Double> alphaPattern,
                            List<Integer> layersToTransform, List<String> layersPattern) {
    /** The file name the messages use. */
    static final String FILE = "adapter_config.json";
    /** The largest {@code |lora_alpha|} (and {@code alpha_pattern} value), hence the largest scaling. */
    public static final double MAX_ALPHA = 10_000;
    private static final ObjectMapper JSON = new ObjectMapper()
        .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    private static final String SUPPORTED = Arrays.stream(LoraModule.values())
        .map(LoraModule::peftName).collect(Collectors.joining(", "));

    public AdapterConfig {
        targetModules = List.copyOf(targetModules);
        excludeModules = List.copyOf(excludeModules);
        rankPattern = Collections.unmodifiableMap(new LinkedHashMap<>(rankPattern));
        alphaPattern = Collections.unmodifiableMap(new LinkedHashMap<>(alphaPattern));
        layersToTransform = List.copyOf(layersToTransform);
        layersPattern = List.copyOf(layersPattern);
    }

    /** Reads and checks {@code file}; a missing file or bad content is an {@link AdapterValidationException}. */
    public static AdapterConfig read(Path file) {
        try {
            return parse(Files.readAllBytes(file));
        } catch (NoSuchFileException e) {
            throw new AdapterValidationException(FILE + " is missing");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Parses and checks the JSON text of an {@code adapter_config.json}. */
    public static AdapterConfig parse(byte[] json) {
        JsonNode root;
        try {
            root = JSON.readTree(json);
        } catch (JsonProcessingException e) {
            throw new AdapterValidationException(FILE + " is not valid JSON: " + e.getOriginalMessage());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        if (root == null || !root.isObject()) {
            throw new AdapterValidationException(FILE + " must be a JSON object");
        }
        refuseUnsupported(root);
        int r = positiveInt(root.get("r"), "r");
        JsonNode alphaNode = root.get("lora_alpha");
        if (alphaNode == null || alphaNode.isNull()) {
            throw new AdapterValidationException(FILE + ": \"lora_alpha\" is missing");
        }
        double alpha = alpha(alphaNode, "lora_alpha");
        JsonNode dropout = root.get("lora_dropout");
        if (dropout != null && !dropout.isNull()) {
            inRange(dropout, "lora_dropout", 0, 1, "a probability"); // unused at inference, but a number out of range is a broken file
        }
        List<String> targets = new ArrayList<>();
        String targetRegex = null;
        JsonNode tm = root.get("target_modules");
        if (tm == null || tm.isNull()) {
            targets.addAll(List.of("q_proj", "v_proj"));
        } else if (tm.isTextual()) {
            if (tm.asText().toLowerCase(Locale.ROOT).equals("all-linear")) {
                Arrays.stream(LoraModule.values()).map(LoraModule::peftName).forEach(targets::add);
            } else {
                targetRegex = regex(tm.asText(), "target_modules");
            }
        } else {
            targets.addAll(strings(tm, "target_modules"));
            if (targets.isEmpty()) {
                throw new AdapterValidationException(FILE + ": \"target_modules\" is empty");
            }
            for (String t : targets) {
                String last = t.substring(t.lastIndexOf('.') + 1);
                if (LoraModule.ofPeftName(last).isEmpty()) {
                    throw new AdapterValidationException("unknown target module " + t + "; supported: " + SUPPORTED);
                }
            }
        }
        List<String> exclude = new ArrayList<>();
        String excludeRegex = null;
        JsonNode ex = root.get("exclude_modules");
        if (ex != null && ex.isTextual()) {
            excludeRegex = regex(ex.asText(), "exclude_modules");
        } else if (ex != null && !ex.isNull()) {
            exclude.addAll(strings(ex, "exclude_modules"));
        }
        boolean rslora = bool(root.get("use_rslora"), "use_rslora");
        bool(root.get("fan_in_fan_out"), "fan_in_fan_out"); // type-checked, then ignored (see class doc)
        Map<String, Integer> rankPattern = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : fields(root.get("rank_pattern"), "rank_pattern")) {
            regex(e.getKey(), "rank_pattern");
            rankPattern.put(e.getKey(), positiveInt(e.getValue(), "rank_pattern." + e.getKey()));
        }
        Map<String, Double> alphaPattern = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : fields(root.get("alpha_pattern"), "alpha_pattern")) {
            regex(e.getKey(), "alpha_pattern");
            alphaPattern.put(e.getKey(), alpha(e.getValue(), "alpha_pattern." + e.getKey()));
        }
        List<Integer> layers = new ArrayList<>();
        JsonNode lt = root.get("layers_to_transform");
        if (lt != null && lt.isArray()) {
            for (JsonNode n : lt) {
                layers.add(nonNegativeInt(n, "layers_to_transform"));
            }
        } else if (lt != null && !lt.isNull()) {
            layers.add(nonNegativeInt(lt, "layers_to_transform"));
        }
        List<String> layersPattern = new ArrayList<>();
        JsonNode lp = root.get("layers_pattern");
        if (lp != null && lp.isTextual()) {
            if (!lp.asText().isEmpty()) {
                layersPattern.add(regex(lp.asText(), "layers_pattern"));
            }
        } else if (lp != null && !lp.isNull()) {
            for (String p : strings(lp, "layers_pattern")) {
                layersPattern.add(regex(p, "layers_pattern"));
            }
        }
        return new AdapterConfig(r, alpha, targets, targetRegex, exclude, excludeRegex, rslora,
            rankPattern, alphaPattern, layers, layersPattern);
    }

    /** PEFT's module key of a projection, e.g. {@code model.layers.3.self_attn.q_proj}. */
    public static String moduleKey(int layer, LoraModule m) {
        return "model.layers." + layer + "." + m.block() + "." + m.peftName();
    }

    /** Whether PEFT would put a LoRA layer on the module called {@code key}. */
    public boolean targets(String key) {
        if (excluded(key)) {
            return false;
        }
        if (targetRegex != null) {
            return Pattern.compile(targetRegex).matcher(key).matches();
        }
        if (targetModules.contains(key)) {
            return true; // named in full: layers_to_transform does not apply
        }
        boolean found = targetModules.stream().anyMatch(t -> key.endsWith("." + t));
        if (!found || layersToTransform.isEmpty()) {
            return found;
        }
        Integer index = layerIndex(key);
        return index != null && layersToTransform.contains(index);
    }

    /** The rank of module {@code key}: its {@code rank_pattern} entry, else {@code r}. */
    public int rankFor(String key) {
        String p = patternKey(rankPattern.keySet(), key);
        return p == null ? r : rankPattern.get(p);
    }

    /** The alpha of module {@code key}: its {@code alpha_pattern} entry, else {@code lora_alpha}. */
    public double alphaFor(String key) {
        String p = patternKey(alphaPattern.keySet(), key);
        return p == null ? loraAlpha : alphaPattern.get(p);
    }

    /** The scaling PEFT applies to module {@code key}'s update. */
    public double scalingFor(String key) {
        int rank = rankFor(key);
        return useRslora ? alphaFor(key) / Math.sqrt(rank) : alphaFor(key) / rank;
    }

    /** The largest rank any module may have: {@code r} or a {@code rank_pattern} value. */
    public int largestRank() {
        int m = r;
        for (int v : rankPattern.values()) {
            m = Math.max(m, v);
        }
        return m;
    }

    private boolean excluded(String key) {
        if (excludeRegex != null) {
            return Pattern.compile(excludeRegex).matcher(key).matches();
        }
        return excludeModules.contains(key) || excludeModules.stream().anyMatch(t -> key.endsWith("." + t));
    }

    private Integer layerIndex(String key) {
        List<String> patterns = layersPattern.isEmpty() ? List.of("[^.]*") : layersPattern;
        for (String p : patterns) {
            Matcher m = Pattern.compile(".*\\." + p + "\\.(\\d+)\\.").matcher(key);
            if (m.lookingAt()) {
                return Integer.valueOf(m.group(m.groupCount()));
            }
        }
        return null;
    }

    /** PEFT's {@code get_pattern_key}: the first pattern P with {@code (.*\.)?(P)} matching all of {@code key}. */
    private static String patternKey(Iterable<String> patterns, String key) {
        for (String p : patterns) {
            if (Pattern.compile("(.*\\.)?(" + javaRegex(p) + ")").matcher(key).matches()) {
                return p;
            }
        }
        return null;
    }

    /** Python named groups {@code (?P<n>...)} / {@code (?P=n)} in Java syntax; the rest is shared. */
    private static String javaRegex(String python) {
        return python.replace("(?P<", "(?<").replaceAll("\\(\\?P=(\\w+)\\)", "\\\\k<$1>");
    }

    private static void refuseUnsupported(JsonNode root) {
        JsonNode type = root.get("peft_type");
        if (type != null && !type.isNull() && !"LORA".equals(type.asText())) {
            throw new AdapterValidationException(FILE + ": peft_type is " + type + "; only LORA adapters are supported");
        }
        if (bool(root.get("use_dora"), "use_dora")) {
            throw new AdapterValidationException("DoRA (use_dora) is not supported");
        }
        JsonNode bias = root.get("bias");
        if (bias != null && !bias.isNull()) {
            if (!bias.isTextual()) {
                throw new AdapterValidationException(FILE + ": \"bias\" must be a string, got " + bias);
            }
            if (!bias.asText().equals("none")) {
                throw new AdapterValidationException("bias \"" + bias.asText()
                    + "\" (trained biases) is not supported; only bias \"none\"");
            }
        }
        if (bool(root.get("lora_bias"), "lora_bias")) {
            throw new AdapterValidationException("lora_bias (trained biases on lora_B) is not supported");
        }
        JsonNode mts = root.get("modules_to_save");
        if (mts != null && !mts.isNull() && !(mts.isArray() && mts.isEmpty())) {
            throw new AdapterValidationException("modules_to_save " + mts
                + " is not supported: it replaces whole modules of the base model");
        }
        for (String f : List.of("layer_replication", "target_parameters", "trainable_token_indices", "alora_invocation_tokens")) {
            JsonNode n = root.get(f);
            if (n != null && !n.isNull() && !(n.isContainerNode() && n.isEmpty())) {
                throw new AdapterValidationException(f + " is not supported");
            }
        }
        JsonNode init = root.get("init_lora_weights");
        if (init != null && init.isTextual()) {
            String v = init.asText().toLowerCase(Locale.ROOT);
            if (v.startsWith("pissa") || v.equals("olora") || v.equals("corda")) {
                throw new AdapterValidationException("init_lora_weights \"" + init.asText() + "\" is not supported: such an"
                    + " adapter needs a modified base model; save it with path_initial_model_for_weight_conversion");
            }
        }
    }

    private static int positiveInt(JsonNode n, String field) {
        if (n == null || n.isNull()) {
            throw new AdapterValidationException(FILE + ": \"" + field + "\" is missing");
        }
        if (!isIntegral(n) || n.asDouble() < 1 || n.asDouble() > Integer.MAX_VALUE) {
            throw new AdapterValidationException(FILE + ": \"" + field + "\" must be a positive integer, got " + n);
        }
        return n.asInt();
    }

    private static int nonNegativeInt(JsonNode n, String field) {
        if (!isIntegral(n) || n.asDouble() < 0 || n.asDouble() > Integer.MAX_VALUE) {
            throw new AdapterValidationException(FILE + ": \"" + field + "\" must be a layer index or a list of them, got " + n);
        }
        return n.asInt();
    }

    private static boolean isIntegral(JsonNode n) {
        return n.isIntegralNumber() || (n.isFloatingPointNumber() && n.asDouble() == Math.rint(n.asDouble()));
    }

    /** An alpha: a finite number within ±{@link #MAX_ALPHA} (see the class comment for why). */
    private static double alpha(JsonNode n, String field) {
        return inRange(n, field, -MAX_ALPHA, MAX_ALPHA, "the update is scaled by alpha / r (alpha / sqrt(r) with use_rslora),"
            + " and real adapters use 1 to about 1000");
    }

    /** A number in {@code [min, max]}; else refused with the field, its value, the range and {@code why}. */
    private static double inRange(JsonNode n, String field, double min, double max, String why) {
        if (!n.isNumber()) {
            throw new AdapterValidationException(FILE + ": \"" + field + "\" must be a number, got " + n);
        }
        double v = n.asDouble();
        if (!(v >= min && v <= max)) { // NaN and ±infinity fail too
            throw new AdapterValidationException(FILE + ": \"" + field + "\" is " + n + ", outside the allowed range "
                + plain(min) + " to " + plain(max) + " (" + why + ")");
        }
        return v;
    }

    /** {@code 10000} rather than {@code 10000.0}. */
    private static String plain(double v) {
        return v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
    }

    private static boolean bool(JsonNode n, String field) {
        if (n == null || n.isNull()) {
            return false;
        }
        if (!n.isBoolean()) {
            throw new AdapterValidationException(FILE + ": \"" + field + "\" must be true or false, got " + n);
        }
        return n.asBoolean();
    }

    private static List<String> strings(JsonNode n, String field) {
        if (!n.isArray()) {
            throw new AdapterValidationException(FILE + ": \"" + field + "\" must be a string or a list of strings, got " + n);
        }
        List<String> out = new ArrayList<>();
        for (JsonNode e : n) {
            if (!e.isTextual()) {
                throw new AdapterValidationException(FILE + ": \"" + field + "\" must hold strings, got " + e);
            }
            out.add(e.asText());
        }
        return out;
    }

    private static Iterable<Map.Entry<String, JsonNode>> fields(JsonNode n, String field) {
        if (n == null || n.isNull()) {
            return List.of();
        }
        if (!n.isObject()) {
            throw new AdapterValidationException(FILE + ": \"" + field + "\" must be an object, got " + n);
        }
        List<Map.Entry<String, JsonNode>> out = new ArrayList<>();
        n.fields().forEachRemaining(out::add);
        return out;
    }

    /** Checks that {@code python} compiles (in Java syntax) and returns the Java form. */
    private static String regex(String python, String field) {
        String java = javaRegex(python);
        try {
            Pattern.compile(java);
        } catch (PatternSyntaxException e) {
            throw new AdapterValidationException(FILE + ": \"" + field + "\" has an invalid regular expression '"
                + python + "': " + e.getDescription());
        }
        return java;
    }
}
