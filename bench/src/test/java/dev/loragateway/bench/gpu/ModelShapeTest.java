package dev.loragateway.bench.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class ModelShapeTest {
    @Test
    void theSevenBPresetHasLlama2SevenBsParameterCount() {
        assertEquals(6_738_415_616L, ModelShape.LLAMA_7B.parameters()); // Llama-2-7b-hf, as HF counts it
        assertEquals(2L * 202_375_168, ModelShape.LLAMA_7B.layerBytes());
    }

    @Test
    void theOneBPresetIsAbout1Point1BParametersAnd122MbPerLayer() {
        ModelShape s = ModelShape.LLAMA_1B;
        assertEquals(1_104_218_112L, s.parameters());
        assertEquals(121_634_816L, s.layerBytes());
        List<ModelShape.Matrix> w = s.layerWeights();
        assertEquals(List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
            w.stream().map(ModelShape.Matrix::name).toList());
        assertEquals(new ModelShape.Matrix("k_proj", 512, 2048), w.get(1), "8 kv heads of 64");
        assertEquals(new ModelShape.Matrix("down_proj", 2048, 8192), w.get(6));
    }

    @Test
    void presetsAndCustomShapesParse() {
        assertEquals(ModelShape.LLAMA_1B, ModelShape.parse("1b"));
        assertEquals(ModelShape.LLAMA_7B, ModelShape.parse("7b"));
        assertEquals(ModelShape.TINY, ModelShape.parse("tiny"));
        ModelShape c = ModelShape.parse("96:256:3:6:2:16:500");
        assertEquals(new ModelShape("96:256:3:6:2:16:500", 96, 256, 3, 6, 2, 16, 500), c);
        assertEquals(2L * (96 * 96 + 2 * 32 * 96 + 96 * 96 + 3 * 256 * 96), c.layerBytes());
    }

    @Test
    void badShapesSayWhatIsWrong() {
        var e = assertThrows(IllegalArgumentException.class, () -> ModelShape.parse("13b"));
        assertTrue(e.getMessage().contains("expected 1b, 7b, tiny or hidden:"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ModelShape.parse("64:128:2:x:2:16:100"));
        assertTrue(e.getMessage().contains("'x' is not a number"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> ModelShape.parse("64:128:2:6:4:16:100"));
        assertTrue(e.getMessage().contains("6 heads are not a multiple of 4 kv heads"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> ModelShape.parse("0:128:2:4:4:16:100"));
    }
}
