package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterTiers;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.DType;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * A small random f32 model with nine adapters, device tiers over them, and references: each
 * adapter's merged-weights twin run alone, one sequence at a time, by {@link Generator}. Adapters
 * are keyed as system adapters of their name ({@link #key}). Its loader thread and reference CPU
 * backend start on first use; {@link #close} stops them.
 */
final class EngineFixture implements AutoCloseable {
    final ModelConfig cfg;
    final Map<String, float[]> base;
    final LlamaModel model;
    final List<LoraAdapter> adapters;
    private final Map<String, LlamaModel> twins = new ConcurrentHashMap<>();
    private ExecutorService loader;
    private CpuBackend refCpu;

    EngineFixture(long seed) {
        Random rnd = new Random(seed);
        cfg = RandomModels.config(40, 72, 2, 4, 2, 97);
        base = RandomModels.weights(cfg, rnd, DType.F32);
        model = RandomModels.model(cfg, base, DType.F32);
        adapters = RandomModels.mixedAdapters(cfg.shape(), rnd);
    }

    /** The key of the adapter named {@code name}; null (the base model) for null. */
    static AdapterKey key(String name) {
        return name == null ? null : AdapterKey.system(name);
    }

    /** A device tier of {@code slots} slots over the nine adapters, loading on this fixture's loader thread. */
    DeviceTier<AdapterKey> tier(int slots) {
        return tier(slots, loader());
    }

    /** As above, loading on {@code loader}. */
    DeviceTier<AdapterKey> tier(int slots, Executor loader) {
        Map<AdapterKey, LoraAdapter> disk = new HashMap<>();
        for (LoraAdapter a : adapters) {
            disk.put(key(a.name()), a);
        }
        return new AdapterTiers(cfg.shape(), slots, Long.MAX_VALUE, 1 << 24, k -> {
            LoraAdapter a = disk.get(k);
            if (a == null) {
                throw new IllegalArgumentException("no adapter named " + k.name());
            }
            return a;
        }, loader).device();
    }

    private synchronized Executor loader() {
        if (loader == null) {
            loader = Executors.newSingleThreadExecutor();
        }
        return loader;
    }

    /** The one-thread CPU backend the references run on. */
    synchronized CpuBackend refCpu() {
        if (refCpu == null) {
            refCpu = new CpuBackend(1);
        }
        return refCpu;
    }

    @Override
    public synchronized void close() {
        if (loader != null) {
            loader.shutdownNow();
        }
        if (refCpu != null) {
            refCpu.close();
        }
    }

    /**
     * Waits (up to 20 s) until {@code engine} runs, queues and holds nothing and {@code tier} (when
     * given) holds no pin, then asserts it: finished or cancelled work leaked no block or pin.
     */
    static void assertIdle(Engine engine, DeviceTier<?> tier) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while ((engine.running() > 0 || engine.kvBlocksUsed() > 0 || engine.queued() > 0 || (tier != null && tier.totalPins() > 0))
            && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertEquals(0, engine.running(), "sequences still running");
        assertEquals(0, engine.queued(), "sequences still queued");
        assertEquals(0, engine.kvBlocksUsed(), "KV blocks leaked");
        if (tier != null) {
            assertEquals(0, tier.totalPins(), "adapter pins leaked");
        }
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
    Run alone(String adapter, int[] prompt, SamplingParams params) {
        Generator g = new Generator(new ForwardPass(twin(adapter), refCpu()));
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
