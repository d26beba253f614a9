package dev.loragateway.gateway.demo;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.kernels.SafeTensorsWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The demo model's PEFT LoRA adapters, written as PEFT saves them ({@code adapter_config.json} with
 * sorted keys, {@code adapter_model.safetensors} in the model's dtype).
 *
 * <p>Unlike PEFT's initialisation (B = 0, a no-op), B is random too: A has std {@code 1/sqrt(in)}
 * and B std {@code STRENGTH / (scaling · sqrt(r))}, so that the update {@code scaling · B·A·x} is
 * about half as large as the base projection {@code W·x} and visibly changes what the model says.
 */
public final class DemoAdapters {
    /** Relative size of the adapter's update against the base projection's output. */
    static final float STRENGTH = 0.5f;

    /** One adapter: its directory name, rank, alpha, target modules and whether it uses rsLoRA. */
    public record Spec(String name, int r, int alpha, List<String> targets, boolean useRslora) {
        /** PEFT's scaling: {@code alpha / r}, or {@code alpha / sqrt(r)} with rsLoRA. */
        public double scaling() {
            return useRslora ? alpha / Math.sqrt(r) : (double) alpha / r;
        }
    }

    public static final List<String> ALL_MODULES =
        List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj");

    /** The adapters written under {@code adapters/}. */
    public static final List<Spec> ALL = List.of(
        new Spec("demo-r4", 4, 8, List.of("q_proj", "v_proj"), false),
        new Spec("demo-r8", 8, 16, ALL_MODULES, false),
        new Spec("demo-r16", 16, 32, List.of("q_proj", "k_proj", "v_proj", "o_proj"), false),
        new Spec("demo-r8-mlp", 8, 16, List.of("gate_proj", "up_proj", "down_proj"), false));

    private DemoAdapters() {
    }

    /** {@code {out, in}} of a target module's base weight. */
    public static int[] outIn(String module, DemoModel.Options o) {
        int h = o.hiddenSize();
        return switch (module) {
            case "q_proj" -> new int[] {o.qDim(), h};
            case "k_proj", "v_proj" -> new int[] {o.kvDim(), h};
            case "o_proj" -> new int[] {h, o.qDim()};
            case "gate_proj", "up_proj" -> new int[] {o.intermediateSize(), h};
            case "down_proj" -> new int[] {h, o.intermediateSize()};
            default -> throw new IllegalArgumentException("unknown module " + module);
        };
    }

    /** {@code self_attn} or {@code mlp}: the block a module belongs to. */
    public static String block(String module) {
        return switch (module) {
            case "gate_proj", "up_proj", "down_proj" -> "mlp";
            default -> "self_attn";
        };
    }

    /** The PEFT tensor name, e.g. {@code base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight}. */
    public static String tensorName(int layer, String module, char ab) {
        return "base_model.model.model.layers." + layer + "." + block(module) + "." + module + ".lora_" + ab + ".weight";
    }

    /** Writes every adapter of {@link #ALL} as {@code dir/NAME/}. */
    static void write(Path dir, DemoModel.Options o) throws IOException {
        for (Spec s : ALL) {
            Path d = dir.resolve(s.name());
            Files.createDirectories(d);
            DemoModel.writeJson(d.resolve("adapter_config.json"), config(s));
            writeTensors(d.resolve("adapter_model.safetensors"), s, o);
        }
    }

    /**
     * Writes one more adapter of the demo model's shape as {@code dir/NAME/} (PEFT files), its weights
     * drawn from {@code seed}: load tests upload thousands of distinct small adapters this way.
     */
    public static void writeRandom(Path dir, DemoModel.Options o, Spec s, long seed) throws IOException {
        Path d = dir.resolve(s.name());
        Files.createDirectories(d);
        DemoModel.writeJson(d.resolve("adapter_config.json"), config(s));
        writeTensors(d.resolve("adapter_model.safetensors"), s, o.withSeed(seed));
    }

    static ObjectNode config(Spec s) {
        ObjectNode c = DemoModel.JSON.createObjectNode(); // keys sorted, as PEFT writes them
        c.putObject("alpha_pattern");
        c.putNull("auto_mapping");
        c.put("base_model_name_or_path", DemoModel.MODEL_ID);
        c.put("bias", "none");
        c.put("fan_in_fan_out", false);
        c.put("inference_mode", true);
        c.put("init_lora_weights", true);
        c.putNull("layer_replication");
        c.putNull("layers_pattern");
        c.putNull("layers_to_transform");
        c.putObject("loftq_config");
        c.put("lora_alpha", s.alpha());
        c.put("lora_dropout", 0.0);
        c.putNull("megatron_config");
        c.put("megatron_core", "megatron.core");
        c.putNull("modules_to_save");
        c.put("peft_type", "LORA");
        c.put("r", s.r());
        c.putObject("rank_pattern");
        c.putNull("revision");
        var t = c.putArray("target_modules");
        s.targets().forEach(t::add);
        c.put("task_type", "CAUSAL_LM");
        c.put("use_dora", false);
        c.put("use_rslora", s.useRslora());
        return c;
    }

    private static void writeTensors(Path file, Spec s, DemoModel.Options o) throws IOException {
        SafeTensorsWriter w = new SafeTensorsWriter();
        for (int l = 0; l < o.layers(); l++) {
            for (String m : s.targets()) {
                int[] oi = outIn(m, o);
                w.declare(tensorName(l, m, 'A'), o.dtype(), s.r(), oi[1]);
                w.declare(tensorName(l, m, 'B'), o.dtype(), oi[0], s.r());
            }
        }
        float bStd = (float) (STRENGTH / (s.scaling() * Math.sqrt(s.r())));
        w.write(file, Map.of("format", "pt"), (t, sink) -> {
            int[] shape = t.shape();
            boolean isA = t.name().contains(".lora_A.");
            float std = isA ? (float) (1 / Math.sqrt(shape[1])) : bStd;
            SplittableRandom r = DemoModel.rng(o.seed(), s.name() + "/" + t.name());
            float[] v = new float[Math.toIntExact(t.size())];
            DemoModel.gaussian(r, v, v.length, 0, std);
            sink.write(v);
        });
    }
}
