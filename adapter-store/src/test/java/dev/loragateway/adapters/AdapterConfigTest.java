package dev.loragateway.adapters;

import static dev.loragateway.adapters.Refusals.assertRefused;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

/** PEFT's matching rules, checked on module keys directly. */
class AdapterConfigTest {
    private static AdapterConfig parse(String json) {
        return AdapterConfig.parse(json.getBytes(StandardCharsets.UTF_8));
    }

    private static String key(int layer, LoraModule m) {
        return AdapterConfig.moduleKey(layer, m);
    }

    @Test
    void moduleKeysAreThoseOfLlamaForCausalLm() {
        assertEquals("model.layers.3.self_attn.q_proj", key(3, LoraModule.Q_PROJ));
        assertEquals("model.layers.0.mlp.down_proj", key(0, LoraModule.DOWN_PROJ));
    }

    @Test
    void listTargetsMatchBySuffixOrFullKey() {
        AdapterConfig c = parse("{\"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\", \"model.layers.1.mlp.up_proj\"]}");
        assertTrue(c.targets(key(0, LoraModule.Q_PROJ)));
        assertTrue(c.targets(key(1, LoraModule.UP_PROJ)));
        assertFalse(c.targets(key(0, LoraModule.UP_PROJ)));
        assertFalse(c.targets(key(0, LoraModule.K_PROJ)));
    }

    @Test
    void missingTargetModulesMeansPeftsLlamaDefault() {
        AdapterConfig c = parse("{\"r\": 4, \"lora_alpha\": 8}");
        assertEquals(List.of("q_proj", "v_proj"), c.targetModules());
    }

    @Test
    void allLinearIsCaseInsensitive() {
        AdapterConfig c = parse("{\"r\": 4, \"lora_alpha\": 8, \"target_modules\": \"ALL-LINEAR\"}");
        for (LoraModule m : LoraModule.values()) {
            assertTrue(c.targets(key(2, m)), m.toString());
        }
    }

    @Test
    void layersToTransformDoesNotApplyToRegexOrFullKeys() {
        AdapterConfig regex = parse("{\"r\": 4, \"lora_alpha\": 8, \"target_modules\": \".*q_proj\", \"layers_to_transform\": [0]}");
        assertTrue(regex.targets(key(2, LoraModule.Q_PROJ)));
        AdapterConfig full = parse("{\"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"model.layers.2.self_attn.q_proj\", \"k_proj\"],"
            + " \"layers_to_transform\": 0}");
        assertTrue(full.targets(key(2, LoraModule.Q_PROJ)));
        assertTrue(full.targets(key(0, LoraModule.K_PROJ)));
        assertFalse(full.targets(key(2, LoraModule.K_PROJ)));
    }

    @Test
    void layersPatternThatIsNotInTheKeyTargetsNothing() {
        AdapterConfig c = parse("{\"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"], \"layers_to_transform\": [0],"
            + " \"layers_pattern\": [\"h\", \"blocks\"]}");
        assertFalse(c.targets(key(0, LoraModule.Q_PROJ)));
        AdapterConfig d = parse("{\"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"], \"layers_to_transform\": [0],"
            + " \"layers_pattern\": [\"h\", \"layers\"]}");
        assertTrue(d.targets(key(0, LoraModule.Q_PROJ)));
        assertFalse(d.targets(key(1, LoraModule.Q_PROJ)));
    }

    @Test
    void excludeModulesAsListAndRegex() {
        AdapterConfig list = parse("{\"r\": 4, \"lora_alpha\": 8, \"target_modules\": \"all-linear\", \"exclude_modules\": [\"o_proj\"]}");
        assertFalse(list.targets(key(0, LoraModule.O_PROJ)));
        assertTrue(list.targets(key(0, LoraModule.Q_PROJ)));
        AdapterConfig regex = parse("{\"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_proj\"], \"exclude_modules\": \".*\\\\.1\\\\..*\"}");
        assertFalse(regex.targets(key(1, LoraModule.Q_PROJ)));
        assertTrue(regex.targets(key(0, LoraModule.Q_PROJ)));
    }

    @Test
    void patternKeyNeedsAWholeDottedSuffix() {
        AdapterConfig c = parse("{\"r\": 4, \"lora_alpha\": 8, \"rank_pattern\": {\"_proj\": 2, \"proj\": 3, \"p_proj\": 5,"
            + " \"(?P<m>k)_proj\": 6}}");
        // "_proj" and "proj" are not whole dotted components of any key; "p_proj" is "up_proj"'s tail, also not whole
        assertEquals(4, c.rankFor(key(0, LoraModule.UP_PROJ)));
        assertEquals(6, c.rankFor(key(0, LoraModule.K_PROJ))); // Python named group accepted
        assertEquals(6, c.largestRank());
    }

    @Test
    void scalingIsAlphaOverRankOrOverItsRoot() {
        AdapterConfig plain = parse("{\"r\": 16, \"lora_alpha\": 32}");
        assertEquals(2.0, plain.scalingFor(key(0, LoraModule.Q_PROJ)));
        AdapterConfig rs = parse("{\"r\": 16, \"lora_alpha\": 32, \"use_rslora\": true}");
        assertEquals(8.0, rs.scalingFor(key(0, LoraModule.Q_PROJ)));
    }

    @Test
    void integralFloatRankIsAccepted() {
        assertEquals(8, parse("{\"r\": 8.0, \"lora_alpha\": 16.5}").r());
    }

    @Test
    void rootMustBeAnObject() {
        assertRefused(() -> parse("[1, 2]"), "adapter_config.json must be a JSON object");
        assertRefused(() -> parse("{\"r\": 8, \"lora_alpha\": 8} trailing"), "adapter_config.json is not valid JSON");
    }

    @Test
    void unsupportedFeaturesAreNamed() {
        assertRefused(() -> parse("{\"r\": 8, \"lora_alpha\": 8, \"lora_bias\": true}"), "lora_bias", "trained biases");
        assertRefused(() -> parse("{\"r\": 8, \"lora_alpha\": 8, \"layer_replication\": [[0, 2]]}"), "layer_replication is not supported");
        assertRefused(() -> parse("{\"r\": 8}"), "\"lora_alpha\" is missing");
    }

    // ---- issue 12 item 7: lora_alpha 1e308 was accepted and made NaN logits ----------------------

    @Test
    void loraAlpha1e308IsRefusedNamingTheFieldItsValueAndTheRange() {
        for (String alpha : new String[] {"1e308", "-1e308", "1e400", "10000.5", "-10001", "123456789012345678901234567890"}) {
            assertRefused(() -> parse("{\"r\": 8, \"lora_alpha\": " + alpha + "}"),
                "\"lora_alpha\" is ", "outside the allowed range -10000 to 10000", "alpha / r");
        }
        String msg = assertRefused(() -> parse("{\"r\": 8, \"lora_alpha\": 1e308}"), "\"lora_alpha\" is 1.0E308");
        assertTrue(msg.startsWith("adapter_config.json: "), msg);
    }

    @Test
    void alphaPatternValuesHaveTheSameRange() {
        assertRefused(() -> parse("{\"r\": 8, \"lora_alpha\": 16, \"alpha_pattern\": {\"q_proj\": 32, \"v_proj\": 1e308}}"),
            "\"alpha_pattern.v_proj\" is 1.0E308", "-10000 to 10000");
        assertRefused(() -> parse("{\"r\": 8, \"lora_alpha\": 16, \"alpha_pattern\": {\"q_proj\": \"big\"}}"),
            "\"alpha_pattern.q_proj\" must be a number");
    }

    @Test
    void loraDropoutMustBeAProbability() {
        for (String d : new String[] {"2", "-0.1", "1e308"}) {
            assertRefused(() -> parse("{\"r\": 8, \"lora_alpha\": 16, \"lora_dropout\": " + d + "}"),
                "\"lora_dropout\" is ", "outside the allowed range 0 to 1");
        }
        assertRefused(() -> parse("{\"r\": 8, \"lora_alpha\": 16, \"lora_dropout\": \"0.1\"}"), "\"lora_dropout\" must be a number");
    }

    @Test
    void alphasRealAdaptersUseAreAccepted() {
        // PEFT's default, common choices, rsLoRA-style large alphas, the bound itself, negative and zero (PEFT accepts them)
        for (String alpha : new String[] {"8", "16", "32.0", "0.5", "1024", "10000", "-10000", "-16", "0"}) {
            AdapterConfig c = parse("{\"r\": 8, \"lora_alpha\": " + alpha + ", \"lora_dropout\": 0.05, \"use_rslora\": true}");
            assertEquals(Double.parseDouble(alpha), c.loraAlpha());
            assertTrue(Math.abs(c.scalingFor(key(0, LoraModule.Q_PROJ))) <= AdapterConfig.MAX_ALPHA);
        }
        assertEquals(8.0, parse("{\"r\": 1, \"lora_alpha\": 8, \"lora_dropout\": null}").alphaFor(key(0, LoraModule.Q_PROJ)));
        AdapterConfig worst = parse("{\"r\": 1, \"lora_alpha\": 10000, \"rank_pattern\": {\"q_proj\": 1}, \"alpha_pattern\": {\"v_proj\": -10000}}");
        for (LoraModule m : LoraModule.values()) {
            assertTrue(Math.abs(worst.scalingFor(key(0, m))) <= AdapterConfig.MAX_ALPHA, m.toString());
        }
    }
}
