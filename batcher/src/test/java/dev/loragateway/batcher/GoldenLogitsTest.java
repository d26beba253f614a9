package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.cpu.NativeCpu;
import java.nio.file.Path;
import java.nio.file.Paths;
import org.junit.jupiter.api.AutoClose;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The Java forward pass against logits computed independently by {@code tools/golden.py}
 * (float64 torch, Hugging Face Llama semantics) for small generated models: grouped-query
 * attention, tied and untied embeddings, qwen2 q/k/v bias, llama attention_bias, llama3 rope
 * scaling, and bf16 weights in a sharded checkpoint.
 *
 * <p>Tolerances: 1e-4 for f32 weights. For the bf16 case the reference upcasts the same bf16
 * weights exactly, so the remaining gap is float32 accumulation; measured max |Δ| was below 1e-5
 * there as well, and the test allows 1e-4. (Running that model natively in bf16, as HF would, is
 * 0.0133 away from the reference: recorded in the fixture as bf16_native_max_abs_diff.)
 */
class GoldenLogitsTest {
    @AutoClose
    private static final CpuBackend cpu = new CpuBackend(2, CpuBackend.Kernels.JAVA);
    /** The native kernels where this machine has them. */
    @AutoClose
    private static final CpuBackend nativeCpu = NativeCpu.available() ? new CpuBackend(2, CpuBackend.Kernels.NATIVE) : null;

    static Path golden(String name) throws Exception {
        return Paths.get(GoldenLogitsTest.class.getResource("/golden/" + name + "/config.json").toURI()).getParent();
    }

    @ParameterizedTest
    @CsvSource({
        "llama_gqa_untied, 1e-4",
        "llama_tied_mha_bias, 1e-4",
        "qwen2_bias, 1e-4",
        "llama3_rope_scaling, 1e-4",
        "mistral_bf16_sharded, 1e-4"})
    void prefillAndDecodeMatchReference(String name, double tol) throws Exception {
        check(cpu, name, tol);
    }

    /**
     * The same on the native kernels: f32 models run only the attention natively (1e-4); the bf16
     * model's GEMMs round their activations to bf16 (as llama.cpp does), so it must be closer to the
     * float64 reference than Hugging Face running it in bf16 is ({@code bf16_native_max_abs_diff}
     * of the fixture, 0.0133; measured 0.0059).
     */
    @ParameterizedTest
    @CsvSource({
        "llama_gqa_untied, 1e-4",
        "llama_tied_mha_bias, 1e-4",
        "qwen2_bias, 1e-4",
        "llama3_rope_scaling, 1e-4",
        "mistral_bf16_sharded, -1"})
    void prefillAndDecodeMatchReferenceOnNativeKernels(String name, double tol) throws Exception {
        assumeTrue(nativeCpu != null, NativeCpu.describe());
        if (tol < 0) {
            JsonNode exp = new ObjectMapper().readTree(golden(name).resolve("expected.json").toFile());
            tol = exp.get("bf16_native_max_abs_diff").asDouble();
            assertTrue(tol > 0.001 && tol < 0.1, "bf16_native_max_abs_diff " + tol);
        }
        check(nativeCpu, name, tol);
    }

    private static void check(CpuBackend cpu, String name, double tol) throws Exception {
        Path dir = golden(name);
        JsonNode exp = new ObjectMapper().readTree(dir.resolve("expected.json").toFile());
        LlamaModel model = LlamaModel.load(dir);
        int vocab = model.config().vocabSize();
        int[] tokens = ints(exp.get("tokens"));
        ForwardPass fp = new ForwardPass(model, cpu);

        // (a) the whole prompt as one prefill step, logits at every position
        KvCache cache = new KvCache(model.config(), 4); // small: forces the cache to grow
        StepBatch b = new StepBatch();
        for (int t : tokens) {
            b.add(cache, t, true);
        }
        float[] logits = new float[tokens.length * vocab];
        fp.step(b, logits);
        double maxPrefill = maxDiff(exp.get("logits"), logits, vocab, 0, tokens.length);

        // (b) one token per step through the KV cache
        KvCache cache2 = new KvCache(model.config(), 1);
        float[] one = new float[vocab];
        double maxDecode = 0;
        for (int i = 0; i < tokens.length; i++) {
            b.clear();
            b.add(cache2, tokens[i], true);
            fp.step(b, one);
            maxDecode = Math.max(maxDecode, maxDiff(exp.get("logits"), one, vocab, i, 1));
        }
        System.out.printf("%s: max |Δlogit| prefill %.3g, decode %.3g%n", name, maxPrefill, maxDecode);
        assertTrue(maxPrefill <= tol, name + " prefill max |Δlogit| " + maxPrefill + " > " + tol);
        assertTrue(maxDecode <= tol, name + " decode max |Δlogit| " + maxDecode + " > " + tol);

        // (c) greedy continuation through the cache equals the reference's
        int[] greedy = ints(exp.get("greedy"));
        int[] ours = new int[greedy.length];
        int next = argmax(one, 0, vocab);
        for (int i = 0; i < greedy.length; i++) {
            ours[i] = next;
            b.clear();
            b.add(cache2, next, true);
            fp.step(b, one);
            next = argmax(one, 0, vocab);
        }
        assertArrayEquals(greedy, ours, name + " greedy tokens");
    }

    private static double maxDiff(JsonNode expLogits, float[] got, int vocab, int firstPos, int count) {
        double m = 0;
        for (int i = 0; i < count; i++) {
            JsonNode row = expLogits.get(firstPos + i);
            for (int j = 0; j < vocab; j++) {
                m = Math.max(m, Math.abs(row.get(j).asDouble() - got[i * vocab + j]));
            }
        }
        return m;
    }

    private static int argmax(float[] a, int off, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) {
            if (a[off + i] > a[off + best]) {
                best = i;
            }
        }
        return best;
    }

    static int[] ints(JsonNode arr) {
        int[] out = new int[arr.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = arr.get(i).asInt();
        }
        return out;
    }
}
