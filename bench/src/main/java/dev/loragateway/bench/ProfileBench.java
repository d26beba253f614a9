package dev.loragateway.bench;

import dev.loragateway.adapters.AdapterInfo;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterRegistry;
import dev.loragateway.adapters.AdapterTiers;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.adapters.LoraAdapter;
import dev.loragateway.batcher.CpuForwardBackend;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.KvBlockPool;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.SamplingParams;
import dev.loragateway.kernels.cpu.CpuBackend;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The measurements behind {@code bench profile}: the real {@link Engine}, built as {@code serve}
 * builds it for the same options (batch cap, step token budget, KV pool, adapter slots and host
 * tier over registered PEFT adapters), driven by closed-loop clients through a fixed list of loads,
 * with {@link Engine#onStep} recording every step's decode rows, prompt tokens, distinct adapters,
 * positions attended and wall time; then the adapter tiers' load times, host tier → slot and
 * disk → slot, on the same adapters. Fitting the simulator's step model to the steps is the
 * caller's ({@code Profile.fit} lives with the simulator).
 *
 * <p>The loads, each given a share of {@code seconds} (clients stop starting requests when it
 * has passed; the load ends when their last requests finish):
 * <pre>
 *   warm-up   4 clients, 4 adapters (not recorded: the JIT compiles the step)
 *   decode    C clients in 1, 2, 4, ... maxBatch, short prompts (4-16), 24-64 tokens out,
 *             with 0, 1, 4 and 8 adapters (each client its own, round robin)
 *   prompt    1, 4, 16 clients, prompts up to the step budget, 1-2 tokens out, 0 or 4 adapters
 *   context   8 clients, prompts of a quarter of the positions, 16-32 tokens out: decode rows
 *             deep in the context, where attention makes a row dearer
 * </pre>
 * A step's wall time is the engine's: admission before it, planning, the forward pass, sampling.
 */
public final class ProfileBench {
    /**
     * What to build and how long to drive it.
     *
     * @param maxBatch      {@code --max-batch}
     * @param maxStepTokens {@code --max-num-batched-tokens}
     * @param kvCacheBytes  {@code --kv-cache-mb} in bytes; 0 sizes it as serve does (max batch × max model length)
     * @param adapterSlots  {@code --gpu-adapter-slots}
     * @param slotBytes     the slots' byte budget (serve's {@code --adapter-slot-mb}, default a quarter of the heap)
     * @param hostBytes     {@code --host-cache-mb} in bytes
     * @param threads       kernel threads
     * @param seconds       the engine loads' time, all together (the adapter loads come on top)
     */
    public record Options(int maxBatch, int maxStepTokens, long kvCacheBytes, int adapterSlots, long slotBytes, long hostBytes,
                          int threads, double seconds) {
    }

    /** One engine step: which load it ran in, what it held, its wall time. */
    public record Step(String load, int decodeRows, int promptTokens, int adapters, long attended, double millis) {
    }

    /**
     * What was measured.
     *
     * @param steps        every recorded step
     * @param maxBatch      the engine's batch cap
     * @param maxStepTokens the engine's step token budget
     * @param hostLoadMs   host tier → slot, one per load (sorted)
     * @param diskLoadMs   disk → host tier → slot, one per load (sorted; the OS page cache is warm)
     * @param kvBlocks     the KV pool's blocks, as the engine sized it
     * @param blockSize    positions per block
     * @param kvBlockBytes bytes of one block
     * @param adapterSlots slots the budget allows for these adapters: {@code --gpu-adapter-slots}, or fewer when
     *                     the byte budget holds fewer of the measured adapters
     * @param hostAdapters adapters of the measured mean size the host tier holds
     * @param adapterNames the adapters driven (copies of the given ones when fewer than 8 were given)
     */
    public record Result(List<Step> steps, int maxBatch, int maxStepTokens, double[] hostLoadMs, double[] diskLoadMs, int kvBlocks, int blockSize, long kvBlockBytes,
                         int adapterSlots, int hostAdapters, List<String> adapterNames) {
    }

    /** A load: clients, prompt and output lengths, adapters, share of the time. */
    record Load(String name, int clients, int promptMin, int promptMax, int outMin, int outMax, int adapters, double weight) {
    }

    /** Distinct adapters the decode loads go up to. */
    static final int MAX_ADAPTERS = 8;
    static final int BLOCK_SIZE = 16;
    /** Adapter loads timed per tier: every adapter this many times. */
    static final int LOAD_ROUNDS = 3;

    private final LlamaModel model;
    private final Options opts;
    private final PrintStream out;

    public ProfileBench(LlamaModel model, Options opts, PrintStream out) {
        this.model = model;
        this.opts = opts;
        this.out = out;
    }

    /** The loads for a batch cap, a step budget and the model's positions (see the class comment). */
    static List<Load> loads(int maxBatch, int maxStepTokens, int positions) {
        List<Load> l = new ArrayList<>();
        l.add(new Load("warm-up", Math.min(4, maxBatch), 4, 16, 8, 16, 4, 2));
        List<Integer> levels = new ArrayList<>();
        for (int c = 1; c < maxBatch; c *= 2) {
            levels.add(c);
        }
        levels.add(maxBatch);
        for (int a : new int[] {0, 1, 4, MAX_ADAPTERS}) {
            for (int c : levels) {
                l.add(new Load("decode", c, 4, 16, 24, 64, a, 1));
            }
        }
        int longest = Math.max(2, Math.min(maxStepTokens, positions / 2 - 2));
        for (int a : new int[] {0, 4}) {
            for (int c : new int[] {1, 4, 16}) {
                l.add(new Load("prompt", Math.min(c, maxBatch), Math.max(1, longest / 8), longest, 1, 2, a, 1));
            }
        }
        int deep = Math.max(16, positions / 4);
        if (deep + 32 <= positions) {
            l.add(new Load("context", Math.min(8, maxBatch), deep - deep / 4, deep, 16, 32, 4, 2));
        }
        return l;
    }

    /**
     * Builds the engine and the tiers over {@code adapterDirs} ({@code name → PEFT directory}, as
     * {@code --lora-modules}; copied under more names up to {@link #MAX_ADAPTERS} distinct), runs
     * the loads, then times adapter loads.
     *
     * @param modelId the base model's id (no adapter may take it)
     * @param dataDir an empty scratch directory for the adapter registry
     */
    public Result run(String modelId, List<String[]> adapterDirs, Path dataDir) throws Exception {
        AdapterRegistry registry = new AdapterRegistry(dataDir, model.config().shape(), modelId, 64);
        List<AdapterKey> keys = new ArrayList<>();
        List<String> names = new ArrayList<>();
        for (int i = 0; !adapterDirs.isEmpty() && i < Math.max(MAX_ADAPTERS, adapterDirs.size()); i++) {
            String[] a = adapterDirs.get(i % adapterDirs.size());
            String name = i < adapterDirs.size() ? a[0] : a[0] + "-copy" + (i / adapterDirs.size());
            registry.registerSystem(name, Path.of(a[1]));
            keys.add(AdapterKey.system(name));
            names.add(name);
        }
        long kvBlockBytes = KvBlockPool.bytesPerBlock(model.config(), BLOCK_SIZE);
        int positions = model.config().maxPositionEmbeddings();
        List<Step> steps = new ArrayList<>();
        int kvBlocks;
        AdapterTiers tiers = AdapterTiers.of(registry, opts.adapterSlots(), opts.slotBytes(), opts.hostBytes(), AdapterTiers.loaderThread());
        Engine.Options eo = Engine.Options.builder().maxBatch(opts.maxBatch()).kvCacheBytes(opts.kvCacheBytes()).blockSize(BLOCK_SIZE)
            .maxModelLen(positions).maxStepTokens(opts.maxStepTokens()).build();
        Engine engine = new Engine(model, new CpuForwardBackend(new CpuBackend(opts.threads())), tiers.device(), eo);
        try {
            kvBlocks = engine.kvBlocksTotal();
            int usable = Math.min(positions, kvBlocks * BLOCK_SIZE);
            out.printf(Locale.ROOT, "engine as serve builds it: max batch %d, max-num-batched-tokens %d, %d KV blocks of %d (%d bytes each), "
                    + "%d adapter slots, host cache %d MB; adapters %s%n", opts.maxBatch(), opts.maxStepTokens(), kvBlocks, BLOCK_SIZE,
                kvBlockBytes, opts.adapterSlots(), opts.hostBytes() >> 20, names.isEmpty() ? "none (base model only)" : String.join(", ", names));
            List<Load> loads = new ArrayList<>(loads(opts.maxBatch(), opts.maxStepTokens(), usable));
            int given = keys.size();
            loads.removeIf(l -> !l.name().equals("warm-up") && l.adapters() > given); // with no adapters the base-model loads run
            double weights = loads.stream().mapToDouble(Load::weight).sum();
            AtomicReference<String> current = new AtomicReference<>(); // the load now running; null: not recorded
            engine.onStep((shape, nanos) -> { // engine thread only: steps is read after close
                String load = current.get();
                if (load != null) {
                    steps.add(new Step(load, shape.decodeRows(), shape.promptTokens(), shape.adapters(), shape.attended(), nanos / 1e6));
                }
            });
            long t0 = System.nanoTime();
            for (int i = 0; opts.seconds() > 0 && i < loads.size(); i++) { // 0 s: steps come from elsewhere (serve --record-steps)
                Load load = loads.get(i);
                current.set(i == 0 ? null : load.name());
                drive(engine, load, keys.subList(0, Math.min(load.adapters(), keys.size())),
                    (long) (opts.seconds() * 1e9 * load.weight() / weights), 100L + i);
            }
            current.set(null);
            out.printf(Locale.ROOT, "engine loads: %.1f s%n", (System.nanoTime() - t0) / 1e9);
        } finally {
            engine.close(); // joins the engine thread: every step it recorded is visible here
        }
        double[][] loadsMs = keys.isEmpty() ? new double[][] {{}, {}} : timeLoads(registry, keys);
        double slotBytes = 0;
        double hostBytes = 0;
        for (AdapterKey k : keys) {
            AdapterInfo info = registry.get(k).orElseThrow();
            LoraAdapter a = registry.loadWeights(info);
            slotBytes += 4.0 * tiers.device().pool().floatsFor(a);
            hostBytes += a.floatBytes();
        }
        int slots = opts.adapterSlots();
        int host = Integer.MAX_VALUE;
        if (!keys.isEmpty()) {
            slots = (int) Math.max(1, Math.min(slots, opts.slotBytes() / (slotBytes / keys.size())));
            host = (int) Math.max(1, Math.min(Integer.MAX_VALUE, opts.hostBytes() / (hostBytes / keys.size())));
        }
        return new Result(List.copyOf(steps), opts.maxBatch(), opts.maxStepTokens(), loadsMs[0], loadsMs[1], kvBlocks, BLOCK_SIZE, kvBlockBytes, slots, host, names);
    }

    /** {@code load.clients} closed-loop clients until {@code nanos} have passed, then their last requests finish. */
    private void drive(Engine engine, Load load, List<AdapterKey> keys, long nanos, long seed) throws Exception {
        int vocab = model.config().vocabSize();
        ExecutorService pool = Executors.newFixedThreadPool(load.clients(), r -> {
            Thread t = new Thread(r, "profile-client");
            t.setDaemon(true);
            return t;
        });
        long deadline = System.nanoTime() + nanos;
        SplittableRandom master = new SplittableRandom(seed);
        int[] done = new int[load.clients()];
        try {
            List<Future<?>> clients = new ArrayList<>();
            for (int c = 0; c < load.clients(); c++) {
                SplittableRandom r = master.split();
                int client = c;
                clients.add(pool.submit(() -> {
                    for (int n = 0; System.nanoTime() < deadline || n == 0; n++) {
                        int[] prompt = new int[r.nextInt(load.promptMin(), load.promptMax() + 1)];
                        for (int j = 0; j < prompt.length; j++) {
                            prompt[j] = r.nextInt(vocab);
                        }
                        AdapterKey adapter = keys.isEmpty() ? null : keys.get((client + n) % keys.size());
                        CompletableFuture<?> f = engine.submit(new Engine.Request(prompt,
                            SamplingParams.greedy(r.nextInt(load.outMin(), load.outMax() + 1)), adapter, (t, lp) -> true));
                        f.get(2, TimeUnit.MINUTES);
                        done[client]++;
                    }
                    return null;
                }));
            }
            for (Future<?> f : clients) {
                f.get();
            }
        } finally {
            pool.shutdownNow();
        }
        out.printf(Locale.ROOT, "  %-8s %2d clients, prompts %d-%d, %d-%d tokens out, %d adapters: %d requests%n", load.name(),
            load.clients(), load.promptMin(), load.promptMax(), load.outMin(), load.outMax(), keys.size(), Arrays.stream(done).sum());
    }

    /**
     * Times adapter loads through tiers of one slot over the registry (so each load evicts the
     * last): per round, every adapter forgotten and loaded from disk, then every adapter again,
     * now a host-tier hit. A load is prefetch to resident in its slot, on the loader thread, as a
     * request's first pin waits for it in {@code serve}.
     *
     * @return {host ms sorted, disk ms sorted}
     */
    private double[][] timeLoads(AdapterRegistry registry, List<AdapterKey> keys) throws InterruptedException {
        ExecutorService loader = AdapterTiers.loaderThread();
        try {
            AdapterTiers tiers = AdapterTiers.of(registry, 1, opts.slotBytes(), opts.hostBytes(), loader);
            DeviceTier<AdapterKey> device = tiers.device();
            Semaphore landed = new Semaphore(0);
            device.listener(landed::release);
            double[] host = new double[LOAD_ROUNDS * keys.size()];
            double[] disk = new double[LOAD_ROUNDS * keys.size()];
            // at least two adapters (run() registers copies up to 8): each load evicts the other from the one slot
            for (int round = 0; round < LOAD_ROUNDS; round++) {
                for (int i = 0; i < keys.size(); i++) {
                    device.invalidate(keys.get(i)); // out of the host tier too: the next load reads the files
                    disk[round * keys.size() + i] = load(device, landed, keys.get(i));
                }
                for (int i = 0; i < keys.size(); i++) {
                    if (!tiers.host().contains(keys.get(i))) {
                        throw new IllegalStateException("adapter " + keys.get(i) + " left the host tier: raise --host-cache-mb");
                    }
                    host[round * keys.size() + i] = load(device, landed, keys.get(i));
                }
            }
            Arrays.sort(host);
            Arrays.sort(disk);
            return new double[][] {host, disk};
        } finally {
            loader.shutdownNow();
        }
    }

    /** One load of {@code key} (not in a slot now), prefetch to resident; a failed load throws its failure. */
    private static double load(DeviceTier<AdapterKey> device, Semaphore landed, AdapterKey key) throws InterruptedException {
        landed.drainPermits();
        long t0 = System.nanoTime();
        device.prefetch(key);
        if (!landed.tryAcquire(30, TimeUnit.SECONDS)) { // the listener runs once the load is resident, or has failed
            throw new IllegalStateException("adapter " + key + " did not load within 30 s");
        }
        double ms = (System.nanoTime() - t0) / 1e6;
        if (!device.isResident(key)) {
            device.tryPin(key); // throws the load's failure
            throw new IllegalStateException("adapter " + key + " is not resident after its load");
        }
        return ms;
    }
}
