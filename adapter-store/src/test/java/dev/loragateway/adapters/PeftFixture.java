package dev.loragateway.adapters;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.SafeTensorsWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Writes PEFT-format adapters for tests: an {@code adapter_config.json} with PEFT's fields and an
 * {@code adapter_model.safetensors} of random non-zero values, already rounded to the tensor's
 * dtype so that what is read back must equal {@link #values} exactly.
 */
final class PeftFixture {
    /** An odd-sized base model: 3 layers, hidden 40, intermediate 72, q 40, kv 24. */
    static final ModelShape SHAPE = new ModelShape(3, 40, 72, 40, 24);
    static final ObjectMapper JSON = new ObjectMapper();

    /** One tensor to write. */
    record T(DType dtype, int[] shape, float[] values) {
    }

    final ObjectNode config;
    final Map<String, T> tensors = new LinkedHashMap<>();
    private final SplittableRandom rnd;
    DType dtype = DType.F32;
    String infix;

    private PeftFixture(int r, double alpha, List<String> targets, long seed) {
        this.rnd = new SplittableRandom(seed);
        config = JSON.createObjectNode(); // as PEFT writes it (keys sorted)
        config.putObject("alpha_pattern");
        config.put("base_model_name_or_path", "test-model");
        config.put("bias", "none");
        config.put("fan_in_fan_out", false);
        config.put("inference_mode", true);
        config.put("init_lora_weights", true);
        config.putNull("layers_pattern");
        config.putNull("layers_to_transform");
        config.put("lora_alpha", alpha);
        config.put("lora_dropout", 0.05);
        config.putNull("modules_to_save");
        config.put("peft_type", "LORA");
        config.put("r", r);
        config.putObject("rank_pattern");
        targets.forEach(config.putArray("target_modules")::add);
        config.put("task_type", "CAUSAL_LM");
        config.put("use_dora", false);
        config.put("use_rslora", false);
    }

    /** A config only; add tensors with {@link #lora} / {@link #loraAll} / {@link #put}. */
    static PeftFixture config(int r, double alpha, String... targets) {
        return new PeftFixture(r, alpha, List.of(targets), 1234L + r);
    }

    /** An adapter of rank {@code r} on {@code targets} in every layer. */
    static PeftFixture adapter(int r, double alpha, String... targets) {
        PeftFixture f = config(r, alpha, targets);
        for (String t : targets) {
            f.loraAll(LoraModule.ofPeftName(t).orElseThrow(), r);
        }
        return f;
    }

    PeftFixture dtype(DType d) {
        this.dtype = d;
        return this;
    }

    /** PEFT's key for (layer, module, A|B), with {@link #infix} when set. */
    String key(int layer, LoraModule m, char ab) {
        return "base_model.model.model.layers." + layer + "." + m.block() + "." + m.peftName() + ".lora_" + ab
            + (infix == null ? "" : "." + infix) + ".weight";
    }

    /** Adds lora_A {@code [rank, in]} and lora_B {@code [out, rank]} for (layer, m). */
    PeftFixture lora(int layer, LoraModule m, int rank) {
        put(key(layer, m, 'A'), rank, SHAPE.in(m));
        put(key(layer, m, 'B'), SHAPE.out(m), rank);
        return this;
    }

    PeftFixture loraAll(LoraModule m, int rank) {
        for (int l = 0; l < SHAPE.layers(); l++) {
            lora(l, m, rank);
        }
        return this;
    }

    /** Adds a tensor of random non-zero values in {@link #dtype}. */
    PeftFixture put(String key, int... shape) {
        int n = 1;
        for (int d : shape) {
            n *= d;
        }
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            float x = (float) (rnd.nextDouble(0.01, 1.0) * (rnd.nextBoolean() ? 1 : -1));
            v[i] = switch (dtype) {
                case F32 -> x;
                case BF16 -> DType.bf16ToFloat(DType.floatToBf16(x));
                case F16 -> DType.f16ToFloat(DType.floatToF16(x));
            };
        }
        tensors.put(key, new T(dtype, shape, v));
        return this;
    }

    PeftFixture remove(String key) {
        if (tensors.remove(key) == null) {
            throw new IllegalArgumentException("no tensor " + key);
        }
        return this;
    }

    float[] values(String key) {
        return tensors.get(key).values();
    }

    long storedBytes() {
        return tensors.values().stream().mapToLong(t -> (long) t.values().length * t.dtype().bytes()).sum();
    }

    /** Writes {@code dir/adapter_config.json} and {@code dir/adapter_model.safetensors}; returns dir. */
    Path write(Path dir) {
        try {
            Files.createDirectories(dir);
            Files.write(configFile(dir), JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(config));
            SafeTensorsWriter w = new SafeTensorsWriter();
            tensors.forEach((k, t) -> w.declare(k, t.dtype(), t.shape()));
            w.write(weightsFile(dir), Map.of("format", "pt"), (spec, sink) -> sink.write(tensors.get(spec.name()).values()));
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static Path configFile(Path dir) {
        return dir.resolve(PeftAdapterReader.CONFIG_FILE);
    }

    static Path weightsFile(Path dir) {
        return dir.resolve(PeftAdapterReader.WEIGHTS_FILE);
    }
}
