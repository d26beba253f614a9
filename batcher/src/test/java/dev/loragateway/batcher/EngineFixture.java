package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.adapters.HostTier;
import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.cpu.LoraSlotPool;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;

/**
 * A small random f32 model with nine adapters, a device tier over them, and references: each
 * adapter's merged-weights twin run alone, one sequence at a time, by {@link Generator}.
 */
final class EngineFixture {
    final ModelConfig cfg;
    final Map<String, float[]> base;
    final LlamaModel model;
    final List<LoraAdapter> adapters;
    private final Map<String, LlamaModel> twins = new ConcurrentHashMap<>();

    EngineFixture(long seed) {
        Random rnd = new Random(seed);
        cfg = RandomModels.config(40, 72, 2, 4, 2, 97);
        base = RandomModels.weights(cfg, rnd, DType.F32);
        model = RandomModels.model(cfg, base, DType.F32);
        adapters = RandomModels.mixedAdapters(cfg.shape(), rnd);
    }

    DeviceTier<Object> tier(int slots, Executor loader) {
        Map<Object, LoraAdapter> disk = new HashMap<>();
        for (LoraAdapter a : adapters) {
            disk.put(a.name(), a);
        }
        HostTier<Object> host = new HostTier<>(1 << 24, k -> {
            LoraAdapter a = disk.get(k);
            if (a == null) {
                throw new IllegalArgumentException("no adapter named " + k);
            }
            return a;
        });
        return new DeviceTier<>(new LoraSlotPool(slots, cfg.numLayers(), cfg.shape().ins(), cfg.shape().outs()), Long.MAX_VALUE, host, loader);
    }

    /** The model with {@code adapter} merged into its weights (the base model for null). */
    LlamaModel twin(String adapter) {
        if (adapter == null) {
            return model;
        }
        return twins.computeIfAbsent(adapter, k -> RandomModels.model(cfg,
            RandomModels.merged(cfg, base, adapters.stream().filter(x -> x.name().equals(k)).findFirst().orElseThrow()), DType.F32));
    }

    int[] randomPrompt(Random rnd, int maxLen) {
        int[] p = new int[1 + rnd.nextInt(maxLen)];
        for (int j = 0; j < p.length; j++) {
            p[j] = 3 + rnd.nextInt(cfg.vocabSize() - 3);
        }
        return p;
    }

    /** What a generation gave: tokens, and the reference's top log-probabilities per token. */
    record Run(int[] tokens, List<Sampler.Logprobs> logprobs) {
    }

    /** {@code prompt} run alone through {@code adapter}'s merged twin. */
    Run alone(CpuBackend cpu, String adapter, int[] prompt, SamplingParams params) {
        Generator g = new Generator(new ForwardPass(twin(adapter), cpu));
        List<Integer> out = new ArrayList<>();
        List<Sampler.Logprobs> lps = new ArrayList<>();
        SamplingParams withLp = new SamplingParams(params.temperature(), params.topP(), params.seed(), params.maxTokens(), 5);
        g.generate(prompt, withLp, (t, lp) -> {
            out.add(t);
            lps.add(lp);
            return true;
        });
        return new Run(out.stream().mapToInt(Integer::intValue).toArray(), lps);
    }

    /**
     * Asserts the tokens are the reference's. Batched and lone runs add in different orders (about
     * 1e-6 apart), so a greedy choice between two tokens whose logits are within 1e-4 may go either
     * way: such a near tie at the first difference is accepted (and counted), anything else fails.
     *
     * @return 1 when the outputs parted at a near tie, else 0
     */
    static int assertSameTokens(Run ref, int[] got, String where) {
        int n = Math.min(ref.tokens().length, got.length);
        for (int i = 0; i < n; i++) {
            if (ref.tokens()[i] != got[i]) {
                Sampler.Logprobs lp = ref.logprobs().get(i);
                float gotLp = Float.NaN;
                for (int k = 0; k < lp.topTokens().length; k++) {
                    if (lp.topTokens()[k] == got[i]) {
                        gotLp = lp.topLogprobs()[k];
                    }
                }
                float margin = lp.logprob() - gotLp;
                assertTrue(margin < 1e-4, where + ": token " + i + " is " + got[i] + ", the reference's " + ref.tokens()[i]
                    + " (logprob margin " + margin + "); reference " + Arrays.toString(ref.tokens()) + ", got " + Arrays.toString(got));
                return 1;
            }
        }
        assertEquals(Arrays.toString(ref.tokens()), Arrays.toString(got), where);
        return 0;
    }

    static int[] ints(List<Integer> l) {
        synchronized (l) {
            return l.stream().mapToInt(Integer::intValue).toArray();
        }
    }
}
