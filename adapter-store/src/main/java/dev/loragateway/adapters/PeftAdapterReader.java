package dev.loragateway.adapters;

import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.SafeTensors;
import dev.loragateway.kernels.SafeTensorsException;
import dev.loragateway.kernels.Tensor;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.IntBuffer;
import java.nio.ShortBuffer;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads and validates a PEFT LoRA adapter ({@code adapter_config.json} +
 * {@code adapter_model.safetensors}) against the base model it will run on.
 *
 * <p>Tensor names are PEFT's: {@code base_model.model.model.layers.N.(self_attn|mlp).X_proj.lora_A.weight}
 * ({@code A: [r, in]}) and {@code ...lora_B.weight} ({@code B: [out, r]}), optionally with the
 * adapter name before {@code weight} ({@code ...lora_A.default.weight}). Every targeted
 * (layer, module) must have both, with exactly the config's rank (or its {@code rank_pattern}
 * entry) and the base model's widths; nothing else may be in the file. Values are F32, F16 or BF16
 * and must all be finite; they are widened to float32.
 *
 * <p>Three depths, same structural checks: {@link #inspect} reads the header only (shapes, names,
 * config: for re-listing stored adapters at start), {@link #validate} also scans every value
 * without keeping it (for uploads), {@link #read} also converts to the host form. All problems are
 * {@link AdapterValidationException}s whose message names the field or tensor and both numbers;
 * I/O failures other than a missing file are {@link UncheckedIOException}s.
 */
public final class PeftAdapterReader {
    /** PEFT's config file name in an adapter directory. */
    public static final String CONFIG_FILE = "adapter_config.json";
    /** PEFT's safetensors weights file name in an adapter directory. */
    public static final String WEIGHTS_FILE = "adapter_model.safetensors";
    /** PEFT's pickled weights file name, never loaded. */
    public static final String PICKLE_FILE = "adapter_model.bin";

    private static final Pattern KEY = Pattern.compile(
        "base_model\\.model\\.model\\.layers\\.(\\d{1,9})\\.(self_attn|mlp)\\.(\\w+)\\.lora_([AB])(?:\\.([^.]+))?\\.weight");
    private static final String KEY_FORM = "base_model.model.model.layers.N.(self_attn|mlp).X_proj.lora_(A|B).weight";

    private enum Depth { HEADER, VALUES, LOAD }

    private PeftAdapterReader() {
    }

    /** Reads, fully validates and converts an adapter to float32 host memory. */
    public static LoraAdapter read(String name, Path configJson, Path safetensors, ModelShape base, int maxRank) {
        Scan s = scan(configJson, safetensors, base, maxRank, Depth.LOAD);
        return new LoraAdapter(name, s.config.r(), s.config.loraAlpha(), s.summary.targets(), s.summary.storedBytes(), s.parts);
    }

    /** {@link #read} for a PEFT directory ({@code adapter_config.json}, {@code adapter_model.safetensors}). */
    public static LoraAdapter readDirectory(String name, Path dir, ModelShape base, int maxRank) {
        return read(name, dir.resolve(CONFIG_FILE), weightsIn(dir), base, maxRank);
    }

    /** Every check {@link #read} makes, values included, without keeping the weights. */
    public static AdapterSummary validate(Path configJson, Path safetensors, ModelShape base, int maxRank) {
        return scan(configJson, safetensors, base, maxRank, Depth.VALUES).summary;
    }

    /** {@link #validate} for a PEFT directory. */
    public static AdapterSummary validateDirectory(Path dir, ModelShape base, int maxRank) {
        return validate(dir.resolve(CONFIG_FILE), weightsIn(dir), base, maxRank);
    }

    /** The config and header checks of {@link #validate} (names, shapes, ranks), not the values. */
    public static AdapterSummary inspect(Path configJson, Path safetensors, ModelShape base, int maxRank) {
        return scan(configJson, safetensors, base, maxRank, Depth.HEADER).summary;
    }

    private static Path weightsIn(Path dir) {
        Path weights = dir.resolve(WEIGHTS_FILE);
        if (!Files.isRegularFile(weights)) {
            if (Files.isRegularFile(dir.resolve(PICKLE_FILE))) {
                throw new AdapterValidationException("pickled " + PICKLE_FILE + " is never loaded; save the adapter with safetensors");
            }
            throw new AdapterValidationException("adapter directory " + dir.getFileName() + " has no " + WEIGHTS_FILE);
        }
        return weights;
    }

    private record Scan(AdapterConfig config, AdapterSummary summary, LoraAdapter.Part[][] parts) {
    }

    private static Scan scan(Path configJson, Path safetensors, ModelShape base, int maxRank, Depth depth) {
        AdapterConfig config = AdapterConfig.read(configJson);
        if (config.r() > maxRank) {
            throw new AdapterValidationException("adapter rank " + config.r() + " exceeds --max-lora-rank " + maxRank);
        }
        Map<String, Tensor> tensors = open(safetensors);
        Tensor[][][] ab = new Tensor[base.layers()][LoraModule.COUNT][2]; // (layer, module, A|B)
        String infix = null;
        long bytes = 0;
        for (Tensor t : tensors.values()) {
            String key = t.name();
            refuseByName(key);
            Matcher m = KEY.matcher(key);
            if (!m.matches()) {
                throw new AdapterValidationException("unrecognised tensor " + key + " in " + WEIGHTS_FILE + "; expected " + KEY_FORM);
            }
            int layer = Integer.parseInt(m.group(1));
            LoraModule module = LoraModule.ofPeftName(m.group(3)).orElse(null);
            if (module == null || !module.block().equals(m.group(2))) {
                throw new AdapterValidationException("unrecognised tensor " + key + ": " + m.group(2) + "." + m.group(3)
                    + " is not a projection LoRA can adapt (q_proj, k_proj, v_proj, o_proj in self_attn; gate_proj, up_proj, down_proj in mlp)");
            }
            if (layer >= base.layers()) {
                throw new AdapterValidationException(key + " is for layer " + layer + " but the base model has "
                    + base.layers() + " layers (0.." + (base.layers() - 1) + ")");
            }
            String name = m.group(5);
            if (name != null && infix != null && !name.equals(infix)) {
                throw new AdapterValidationException(key + " belongs to adapter '" + name + "' but other tensors to '"
                    + infix + "'; the file must hold one adapter");
            }
            infix = name != null ? name : infix;
            int side = m.group(4).equals("A") ? 0 : 1;
            if (ab[layer][module.ordinal()][side] != null) {
                throw new AdapterValidationException(key + " duplicates " + ab[layer][module.ordinal()][side].name());
            }
            ab[layer][module.ordinal()][side] = t;
            bytes += t.bytes();
        }
        List<LoraModule> targets = new ArrayList<>();
        int adapted = 0;
        for (int l = 0; l < base.layers(); l++) {
            for (LoraModule mod : LoraModule.values()) {
                if (checkPart(config, base, maxRank, l, mod, ab[l][mod.ordinal()])) {
                    adapted++;
                    if (!targets.contains(mod)) {
                        targets.add(mod);
                    }
                }
            }
        }
        if (adapted == 0) {
            throw new AdapterValidationException(CONFIG_FILE + " targets no projection of the base model and "
                + WEIGHTS_FILE + " holds no LoRA tensors");
        }
        targets.sort(null);
        LoraAdapter.Part[][] parts = depth == Depth.LOAD ? new LoraAdapter.Part[base.layers()][LoraModule.COUNT] : null;
        if (depth != Depth.HEADER) {
            for (int l = 0; l < base.layers(); l++) {
                for (LoraModule mod : LoraModule.values()) {
                    Tensor[] pair = ab[l][mod.ordinal()];
                    if (pair[0] == null) {
                        continue;
                    }
                    checkFinite(pair[0]);
                    checkFinite(pair[1]);
                    if (parts != null) {
                        String key = AdapterConfig.moduleKey(l, mod);
                        parts[l][mod.ordinal()] = new LoraAdapter.Part(config.rankFor(key), (float) config.scalingFor(key),
                            pair[0].toFloats(), pair[1].toFloats());
                    }
                }
            }
        }
        return new Scan(config, new AdapterSummary(config.r(), config.loraAlpha(), targets, bytes), parts);
    }

    /** Checks one (layer, module): pairing, targeting, rank and shapes. Returns whether it is adapted. */
    private static boolean checkPart(AdapterConfig config, ModelShape base, int maxRank, int layer, LoraModule mod, Tensor[] pair) {
        String key = AdapterConfig.moduleKey(layer, mod);
        Tensor a = pair[0];
        Tensor b = pair[1];
        boolean targeted = config.targets(key);
        if (a == null && b == null) {
            if (targeted) {
                throw new AdapterValidationException(CONFIG_FILE + " targets " + key + " but " + WEIGHTS_FILE
                    + " has no lora_A/lora_B tensors for it");
            }
            return false;
        }
        if (a == null || b == null) {
            Tensor present = a == null ? b : a;
            throw new AdapterValidationException(present.name() + " has no matching " + (a == null ? "lora_A" : "lora_B")
                + " tensor; LoRA needs both lora_A and lora_B for " + key);
        }
        if (!targeted) {
            throw new AdapterValidationException(a.name() + " adapts " + key + ", which " + CONFIG_FILE
                + " does not target (target_modules / layers_to_transform / exclude_modules)");
        }
        int rank = config.rankFor(key);
        String says = rank == config.r() ? "r=" + rank : "r=" + rank + " for " + key + " (rank_pattern)";
        if (rank > maxRank) {
            throw new AdapterValidationException("adapter rank " + rank + " exceeds --max-lora-rank " + maxRank + " (" + key + ")");
        }
        int in = base.in(mod);
        int out = base.out(mod);
        for (Tensor t : pair) {
            if (t.rank() != 2) {
                throw new AdapterValidationException(t.name() + " has shape " + Arrays.toString(t.shape())
                    + " but LoRA weights are matrices (2 dimensions)");
            }
        }
        if (a.dim(0) != rank) {
            throw new AdapterValidationException(a.name() + " has rank " + a.dim(0) + " but " + CONFIG_FILE + " says " + says);
        }
        if (a.dim(1) != in) {
            throw new AdapterValidationException(a.name() + " has shape " + Arrays.toString(a.shape()) + " but the base model needs ["
                + rank + ", " + in + "] (rank " + rank + " × " + mod.peftName() + " in " + in + ")");
        }
        if (b.dim(1) != rank) {
            throw new AdapterValidationException(b.name() + " has rank " + b.dim(1) + " but " + CONFIG_FILE + " says " + says);
        }
        if (b.dim(0) != out) {
            throw new AdapterValidationException(b.name() + " has shape " + Arrays.toString(b.shape()) + " but the base model needs ["
                + out + ", " + rank + "] (" + mod.peftName() + " out " + out + " × rank " + rank + ")");
        }
        return true;
    }

    /** Keys of features we do not run, refused by what they are rather than as "unrecognised". */
    private static void refuseByName(String key) {
        if (key.contains("lora_embedding_A") || key.contains("lora_embedding_B")) {
            throw new AdapterValidationException(key + ": embedding LoRA (lora_embedding_A/B) is not supported");
        }
        if (key.contains("lora_magnitude_vector")) {
            throw new AdapterValidationException(key + ": DoRA (lora_magnitude_vector) is not supported");
        }
        if (key.contains("lm_head") || key.contains("embed_tokens")) {
            throw new AdapterValidationException(key + ": LoRA on lm_head or embed_tokens is not supported;"
                + " only the attention and MLP projections");
        }
        if (key.endsWith(".bias")) {
            throw new AdapterValidationException(key + ": trained biases are not supported (PEFT bias must be \"none\")");
        }
    }

    private static Map<String, Tensor> open(Path safetensors) {
        try {
            return SafeTensors.open(safetensors);
        } catch (SafeTensorsException e) {
            String msg = e.getMessage();
            String own = e.file().getFileName().toString();
            String rest = msg.startsWith(own) ? msg.substring(own.length()) : ": " + msg;
            throw new AdapterValidationException("invalid " + WEIGHTS_FILE + rest, e);
        } catch (NoSuchFileException e) {
            throw new AdapterValidationException(WEIGHTS_FILE + " is missing");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Fails on the first NaN or infinity, naming the tensor, the flat index and (row, column). */
    private static void checkFinite(Tensor t) {
        long i = firstNonFinite(t);
        if (i >= 0) {
            int cols = t.dim(1);
            throw new AdapterValidationException(t.name() + " element " + i + " (row " + i / cols + ", column " + i % cols
                + ") is " + t.get(i) + "; every value must be finite");
        }
    }

    /** Index of the first element whose exponent bits are all ones (NaN or ±Inf), or -1. */
    static long firstNonFinite(Tensor t) {
        ByteBuffer b = t.buffer();
        switch (t.dtype()) {
            case F32: {
                IntBuffer v = b.asIntBuffer();
                for (int i = 0; i < v.limit(); i++) {
                    if ((v.get(i) & 0x7F80_0000) == 0x7F80_0000) {
                        return i;
                    }
                }
                return -1;
            }
            case BF16:
            case F16: {
                int mask = t.dtype() == DType.BF16 ? 0x7F80 : 0x7C00;
                ShortBuffer v = b.asShortBuffer();
                for (int i = 0; i < v.limit(); i++) {
                    if ((v.get(i) & mask) == mask) {
                        return i;
                    }
                }
                return -1;
            }
            default:
                throw new AssertionError(t.dtype());
        }
    }
}
