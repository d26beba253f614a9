package dev.loragateway.adapters;

import static dev.loragateway.adapters.PeftFixture.SHAPE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.kernels.DType;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Adapters that PEFT writes are read back exactly, with PEFT's scaling, at odd shapes and in every dtype. */
class PeftAdapterReaderTest {
    @TempDir
    Path tmp;

    private LoraAdapter read(PeftFixture f) {
        return PeftAdapterReader.readDirectory("t", f.write(tmp.resolve("a")), SHAPE, 64);
    }

    /** Every part of {@code a} equals the fixture's values exactly and has the expected rank and scaling. */
    private static void assertParts(PeftFixture f, LoraAdapter a, Map<String, float[]> rankScaling) {
        int adapted = 0;
        for (int l = 0; l < SHAPE.layers(); l++) {
            for (LoraModule m : LoraModule.values()) {
                LoraAdapter.Part p = a.part(l, m);
                String key = f.key(l, m, 'A');
                if (!f.tensors.containsKey(key)) {
                    assertNull(p, "layer " + l + " " + m);
                    continue;
                }
                adapted++;
                assertNotNull(p, "layer " + l + " " + m);
                float[] rs = rankScaling.getOrDefault(AdapterConfig.moduleKey(l, m), rankScaling.get("*"));
                assertEquals((int) rs[0], p.rank(), key);
                assertEquals(rs[1], p.scaling(), 0f, key);
                assertArrayEquals(f.values(key), p.a(), key);
                assertArrayEquals(f.values(f.key(l, m, 'B')), p.b(), f.key(l, m, 'B'));
            }
        }
        assertEquals(f.tensors.size() / 2, adapted);
        assertEquals(f.storedBytes(), a.storedBytes());
    }

    @ParameterizedTest
    @EnumSource(DType.class)
    void readsEveryDtypeExactly(DType dtype) {
        PeftFixture f = PeftFixture.config(8, 16, "q_proj", "v_proj", "down_proj").dtype(dtype);
        f.loraAll(LoraModule.Q_PROJ, 8).loraAll(LoraModule.V_PROJ, 8).loraAll(LoraModule.DOWN_PROJ, 8);
        LoraAdapter a = read(f);
        assertEquals(8, a.rank());
        assertEquals(16.0, a.alpha());
        assertEquals(List.of(LoraModule.Q_PROJ, LoraModule.V_PROJ, LoraModule.DOWN_PROJ), a.targets());
        assertEquals(3, a.layers());
        assertParts(f, a, Map.of("*", new float[] {8, 2f}));
        assertEquals(4L * (3 * (8 * 40 + 40 * 8) + 3 * (8 * 40 + 24 * 8) + 3 * (8 * 72 + 40 * 8)), a.floatBytes());
    }

    @Test
    void allLinearTargetsTheSevenProjections() {
        PeftFixture f = PeftFixture.config(4, 8, "x").dtype(DType.BF16);
        f.config.put("target_modules", "all-linear");
        for (LoraModule m : LoraModule.values()) {
            f.loraAll(m, 4);
        }
        LoraAdapter a = read(f);
        assertEquals(List.of(LoraModule.values()), a.targets());
        assertParts(f, a, Map.of("*", new float[] {4, 2f}));
    }

    @Test
    void rsloraScalesByTheSquareRootOfTheRank() {
        PeftFixture f = PeftFixture.adapter(9, 6, "k_proj", "o_proj");
        f.config.put("use_rslora", true);
        assertParts(f, read(f), Map.of("*", new float[] {9, 2f})); // 6 / sqrt(9)
    }

    @Test
    void rankAndAlphaPatternsApplyPerModuleFirstMatchWins() {
        PeftFixture f = PeftFixture.config(4, 8, "q_proj", "v_proj", "down_proj");
        ObjectNode rp = f.config.putObject("rank_pattern");
        rp.put("q_proj", 6);                              // every q_proj
        rp.put("v_proj", 2);                              // every v_proj: listed before the next, so it wins
        rp.put("model.layers.1.self_attn.v_proj", 3);
        ObjectNode ap = f.config.putObject("alpha_pattern");
        ap.put("layers.2.mlp.down_proj", 3.0);           // a dotted suffix of the module key
        ap.put("model\\.layers\\.[01]\\.self_attn\\.q_proj", 12); // a regex
        f.loraAll(LoraModule.Q_PROJ, 6).loraAll(LoraModule.V_PROJ, 2).loraAll(LoraModule.DOWN_PROJ, 4);
        LoraAdapter a = read(f);
        assertEquals(4, a.rank());
        assertParts(f, a, Map.of(
            "model.layers.0.self_attn.q_proj", new float[] {6, 2f},   // 12 / 6
            "model.layers.1.self_attn.q_proj", new float[] {6, 2f},
            "model.layers.2.self_attn.q_proj", new float[] {6, 8f / 6},
            "model.layers.0.self_attn.v_proj", new float[] {2, 4f},
            "model.layers.1.self_attn.v_proj", new float[] {2, 4f},
            "model.layers.2.self_attn.v_proj", new float[] {2, 4f},
            "model.layers.2.mlp.down_proj", new float[] {4, 0.75f},
            "*", new float[] {4, 2f}));
    }

    @Test
    void rsloraWithPatternsUsesTheModulesOwnRankAndAlpha() {
        PeftFixture f = PeftFixture.config(4, 8, "up_proj");
        f.config.put("use_rslora", true);
        f.config.putObject("rank_pattern").put("model.layers.0.mlp.up_proj", 16);
        f.config.putObject("alpha_pattern").put("up_proj", 12);
        f.lora(0, LoraModule.UP_PROJ, 16).lora(1, LoraModule.UP_PROJ, 4).lora(2, LoraModule.UP_PROJ, 4);
        assertParts(f, read(f), Map.of("model.layers.0.mlp.up_proj", new float[] {16, 3f}, "*", new float[] {4, 6f}));
    }

    @Test
    void layersToTransformAsListIntAndWithLayersPattern() {
        PeftFixture f = PeftFixture.config(4, 4, "q_proj", "gate_proj").lora(0, LoraModule.Q_PROJ, 4)
            .lora(2, LoraModule.Q_PROJ, 4).lora(0, LoraModule.GATE_PROJ, 4).lora(2, LoraModule.GATE_PROJ, 4);
        f.config.putArray("layers_to_transform").add(0).add(2);
        LoraAdapter a = read(f);
        assertNull(a.part(1, LoraModule.Q_PROJ));
        assertParts(f, a, Map.of("*", new float[] {4, 1f}));

        PeftFixture g = PeftFixture.config(4, 4, "v_proj").lora(1, LoraModule.V_PROJ, 4);
        g.config.put("layers_to_transform", 1);
        g.config.put("layers_pattern", "layers");
        assertParts(g, PeftAdapterReader.readDirectory("g", g.write(tmp.resolve("g")), SHAPE, 64),
            Map.of("*", new float[] {4, 1f}));
    }

    @Test
    void regexTargetModulesFullMatchTheModuleKey() {
        PeftFixture f = PeftFixture.config(2, 4, "x").loraAll(LoraModule.K_PROJ, 2)
            .loraAll(LoraModule.O_PROJ, 2).lora(1, LoraModule.UP_PROJ, 2);
        f.config.put("target_modules", ".*\\.self_attn\\.(k|o)_proj|model\\.layers\\.1\\.mlp\\.up_proj");
        LoraAdapter a = read(f);
        assertEquals(List.of(LoraModule.K_PROJ, LoraModule.O_PROJ, LoraModule.UP_PROJ), a.targets());
        assertParts(f, a, Map.of("*", new float[] {2, 2f}));
    }

    @Test
    void adapterNameInfixIsAccepted() {
        PeftFixture f = PeftFixture.config(8, 8, "q_proj");
        f.infix = "default";
        f.loraAll(LoraModule.Q_PROJ, 8);
        assertParts(f, read(f), Map.of("*", new float[] {8, 1f}));
    }

    @Test
    void fanInFanOutIsAcceptedAndIgnored() {
        PeftFixture f = PeftFixture.adapter(8, 8, "q_proj");
        f.config.put("fan_in_fan_out", true);
        assertParts(f, read(f), Map.of("*", new float[] {8, 1f}));
    }

    @Test
    void validateAndInspectSummariseWithoutKeepingWeights() {
        PeftFixture f = PeftFixture.adapter(8, 16, "v_proj", "q_proj");
        Path dir = f.write(tmp.resolve("a"));
        AdapterSummary s = PeftAdapterReader.validateDirectory(dir, SHAPE, 64);
        assertEquals(new AdapterSummary(8, 16.0, List.of(LoraModule.Q_PROJ, LoraModule.V_PROJ), f.storedBytes()), s);
        assertEquals(List.of("q_proj", "v_proj"), s.targetNames());
        assertEquals(s, PeftAdapterReader.inspect(PeftFixture.configFile(dir), PeftFixture.weightsFile(dir), SHAPE, 64));
    }

    @Test
    void inspectReadsTheHeaderOnlyValidateScansValues() {
        PeftFixture f = PeftFixture.adapter(8, 16, "q_proj");
        f.values(f.key(1, LoraModule.Q_PROJ, 'B'))[5] = Float.NaN;
        Path dir = f.write(tmp.resolve("a"));
        PeftAdapterReader.inspect(PeftFixture.configFile(dir), PeftFixture.weightsFile(dir), SHAPE, 64);
        Refusals.assertRefused(() -> PeftAdapterReader.validateDirectory(dir, SHAPE, 64), "element 5", "NaN");
    }
}
