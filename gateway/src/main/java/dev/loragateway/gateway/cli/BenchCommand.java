package dev.loragateway.gateway.cli;

import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.bench.ConcurrencyBench;
import dev.loragateway.bench.DecodeBench;
import dev.loragateway.bench.LoraBench;
import dev.loragateway.bench.PrefillBench;
import dev.loragateway.bench.PrefixCacheBench;
import dev.loragateway.bench.ProfileBench;
import dev.loragateway.bench.gpu.GpuBench;
import dev.loragateway.bench.gpu.GpuBenchConfig;
import dev.loragateway.bench.gpu.GpuBenchOptions;
import dev.loragateway.gateway.demo.DemoCache;
import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.cuda.CudaDevice;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.Spec;

/**
 * {@code bench decode | lora | serve | gpu | cluster | profile}: the benches of the {@code bench} module, each
 * subcommand with only its own options (picocli refuses another mode's option, naming it). The CPU
 * benches take {@code --model DIR}; without it this command generates (once, cached) the 254M bf16
 * bench model, which is the CLI's job, not the bench module's.
 *
 * <p>The flag forms of earlier versions stay as aliases: {@code bench [OPTIONS]} runs {@code decode},
 * with {@code --adapters N} {@code lora}, with {@code --concurrency C,...} {@code serve}, with
 * {@code --gpu} {@code gpu}; the other options are handed to that subcommand as given, so it checks
 * them. Two checks remain for the flag form only, as it was: {@code --gpu-*} without {@code --gpu},
 * and {@code --gpu} beside another mode's flag.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
    description = {"Benchmarks: bench decode | pp | prefix | lora | serve | gpu | cluster | profile (see 'bench SUBCOMMAND --help').",
        "The earlier flag forms still work: bench [OPTIONS] is 'bench decode', with --adapters N 'bench lora', with --concurrency C,... "
            + "'bench serve', with --gpu 'bench gpu'; other options go to that subcommand as given."},
    subcommands = {BenchCommand.Decode.class, BenchCommand.Pp.class, BenchCommand.Prefix.class, BenchCommand.Lora.class, BenchCommand.Serve.class, BenchCommand.Gpu.class,
        BenchCommand.Cluster.class, BenchCommand.ProfileCmd.class})
final class BenchCommand implements Callable<Integer> {
    @Option(names = "--gpu", description = "Flag form of 'bench gpu': the GPU bench on the CUDA device: SGMV latency vs distinct adapters "
        + "beside BGMV and gather+bmm, batch-1 GEMV bandwidth beside a device-to-device copy, decode throughput (the CUDA forward pass). "
        + "Exits 2 naming the reason when no CUDA device is usable.")
    boolean gpu;

    @Option(names = "--adapters", paramLabel = "N", description = "Flag form of 'bench lora --adapters N' (with --concurrency: 'bench serve --adapters N').")
    Integer adapters;

    @Option(names = "--concurrency", paramLabel = "C,...", split = ",", description = "Flag form of 'bench serve --concurrency C,...'.")
    List<Integer> concurrency;

    @Option(names = "--model", paramLabel = "DIR", description = "Flag form of the CPU subcommands' --model (not with --gpu).")
    Path model;

    @Mixin
    GpuBenchOptions gpuOptions; // parsed here only to name them in --help and to refuse them without --gpu

    @Mixin
    FlagForm others; // the chosen subcommand's other options, handed on as given

    @Spec
    CommandSpec spec;

    /** The flag form: the subcommand it stands for, run with the same options. */
    @Override
    public Integer call() {
        CommandLine cl = spec.commandLine();
        ParseResult parsed = cl.getParseResult();
        List<String> gpuOnly = parsed.matchedOptions().stream()
            .map(OptionSpec::longestName).filter(n -> n.startsWith(GpuBenchOptions.PREFIX)).toList();
        if (gpu && (concurrency != null || adapters != null || model != null)) {
            throw new ParameterException(cl, "--gpu runs the GPU bench alone: drop --concurrency, --adapters and --model "
                + "(its shapes are --gpu-models)");
        }
        if (!gpu && !gpuOnly.isEmpty()) {
            throw new ParameterException(cl, String.join(", ", gpuOnly)
                + (gpuOnly.size() == 1 ? " applies" : " apply") + " only with --gpu");
        }
        String sub = gpu ? "gpu" : concurrency != null ? "serve" : adapters != null ? "lora" : "decode";
        List<String> args = new ArrayList<>();
        for (OptionSpec o : parsed.matchedOptions()) {
            if (o.longestName().equals("--gpu")) {
                continue;
            }
            if (o.arity().max() == 0) {
                args.add(o.longestName());
                continue;
            }
            for (String v : o.originalStringValues()) {
                args.add(o.longestName());
                args.add(v);
            }
        }
        return cl.getSubcommands().get(sub).execute(args.toArray(String[]::new));
    }

    /**
     * Options given before a subcommand ({@code bench --model X lora}) would be parsed by the
     * flag form and then ignored: refused instead, naming them.
     */
    static void refuseOptionsBeforeSubcommand(CommandSpec sub) {
        ParseResult parent = sub.parent().commandLine().getParseResult();
        if (parent == null || !parent.hasSubcommand()) {
            return; // run by the flag form (call above), which handed its options on
        }
        List<String> given = parent.matchedOptions().stream().map(OptionSpec::longestName).toList();
        if (!given.isEmpty()) {
            throw new ParameterException(sub.commandLine(), String.join(", ", given) + " given before '" + sub.name()
                + "': options go after the subcommand (bench " + sub.name() + " [OPTIONS])");
        }
    }

    /**
     * The CPU subcommands' options, accepted by the flag form and handed on as text: the subcommand
     * converts and checks them. Hidden from {@code bench --help}; each subcommand's help lists its own.
     */
    static final class FlagForm {
        @Option(names = "--threads", hidden = true) String threads;
        @Option(names = "--tokens", hidden = true) String tokens;
        @Option(names = "--prompt-tokens", hidden = true) String promptTokens;
        @Option(names = "--runs", hidden = true) String runs;
        @Option(names = "--copy-mb", hidden = true) String copyMb;
        @Option(names = "--requests", hidden = true) String requests;
        @Option(names = "--think-ms", hidden = true) String thinkMs;
        @Option(names = "--max-batch", hidden = true) String maxBatch;
        @Option(names = "--warmup", hidden = true) String warmup;
        @Option(names = "--batch", hidden = true) String batch;
        @Option(names = "--rank", hidden = true) String rank;
        @Option(names = "--distribution", hidden = true) String distribution;
        @Option(names = "--steps", hidden = true) String steps;
        @Option(names = "--cpu-kernels", hidden = true) String cpuKernels;
    }

    /** {@code --model} and {@code --threads}, shared by the CPU subcommands. */
    static final class CpuModel {
        @Option(names = "--model", paramLabel = "DIR", description = "Model directory (default: a generated 254M-parameter bf16 Llama, ~508 MB, cached).")
        Path model;

        @Option(names = "--threads", paramLabel = "N", description = "Kernel threads (default: one per processor).")
        Integer threads;

        Path dir() throws IOException {
            return model != null ? model : DemoCache.get("bench-h1024-l16-bf16",
                new DemoModel.Options(1024, 2816, 16, 16, 8, 32000, DType.BF16, 7L));
        }

        @Option(names = "--cpu-kernels", paramLabel = "auto|native|java", defaultValue = "auto",
            description = "Kernels of bf16 matmuls: native (AVX-512 BF16, where this CPU and build have it), java (Vector API) or auto "
                + "(native where available; default: ${DEFAULT-VALUE}).")
        String cpuKernels;

        int threads() {
            return threads != null ? threads : Runtime.getRuntime().availableProcessors();
        }

        /** The kernels asked for, applied to every CPU backend this process makes (-Dlora.cpu.native). */
        CpuBackend.Kernels kernels(CommandSpec spec) {
            return CpuKernelChoice.apply(spec, cpuKernels);
        }
    }

    @Command(name = "pp", mixinStandardHelpOptions = true,
        description = {"Prompt processing: tokens/s of one N-token prefill (as llama-bench -p N), for each kernel set in the same run.",
            "Without --cpu-kernels: the Vector API kernels and, where available, the native ones, with their ratio."})
    static final class Pp implements Callable<Integer> {
        @Mixin
        CpuModel cpuModel;

        @Option(names = "--prompt-tokens", paramLabel = "N", defaultValue = "512", description = "Prompt length (default: ${DEFAULT-VALUE}).")
        int promptTokens;

        @Option(names = "--runs", paramLabel = "N", defaultValue = "5", description = "Measured prefills per kernel set; the median is reported (default: ${DEFAULT-VALUE}).")
        int runs;

        @Spec
        CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            refuseOptionsBeforeSubcommand(spec);
            if (promptTokens < 1 || runs < 1) {
                throw new ParameterException(spec.commandLine(), "--prompt-tokens and --runs must be at least 1");
            }
            boolean given = spec.commandLine().getParseResult().hasMatchedOption("--cpu-kernels");
            CpuBackend.Kernels k = cpuModel.kernels(spec);
            List<CpuBackend.Kernels> sets = given ? List.of(k) : PrefillBench.everyAvailable();
            new PrefillBench(promptTokens, runs, cpuModel.threads(), sets).run(cpuModel.dir());
            return 0;
        }
    }

    @Command(name = "prefix", mixinStandardHelpOptions = true,
        description = {"Prefix caching: time to first token of a chat workload whose requests share a system prompt, caching off and on "
            + "in the same run (rounds alternate), with their ratio and the share of prompt tokens found cached."})
    static final class Prefix implements Callable<Integer> {
        @Mixin
        CpuModel cpuModel;

        @Option(names = "--system-tokens", paramLabel = "N", defaultValue = "1000", description = "Shared system prompt length (default: ${DEFAULT-VALUE}).")
        int systemTokens;

        @Option(names = "--user-tokens", paramLabel = "N", defaultValue = "40", description = "Each request's own tokens after it (default: ${DEFAULT-VALUE}).")
        int userTokens;

        @Option(names = "--requests", paramLabel = "N", defaultValue = "6", description = "Requests per round, one at a time (default: ${DEFAULT-VALUE}).")
        int requests;

        @Option(names = "--tokens", paramLabel = "N", defaultValue = "8", description = "Tokens generated per request (default: ${DEFAULT-VALUE}).")
        int tokens;

        @Option(names = "--runs", paramLabel = "N", defaultValue = "2", description = "Rounds per setting (default: ${DEFAULT-VALUE}).")
        int runs;

        @Spec
        CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            refuseOptionsBeforeSubcommand(spec);
            if (systemTokens < 1 || userTokens < 1 || requests < 2 || tokens < 1 || runs < 1) {
                throw new ParameterException(spec.commandLine(),
                    "--system-tokens, --user-tokens, --tokens and --runs must be at least 1, --requests at least 2");
            }
            new PrefixCacheBench(systemTokens, userTokens, requests, tokens, runs, cpuModel.threads(), cpuModel.kernels(spec))
                .run(cpuModel.dir());
            return 0;
        }
    }

    @Command(name = "decode", mixinStandardHelpOptions = true,
        description = "Single-sequence decode tokens/s of the CPU forward pass and the memory bandwidth it implies, beside a plain copy.")
    static final class Decode implements Callable<Integer> {
        @Mixin
        CpuModel cpuModel;

        @Option(names = "--tokens", paramLabel = "N", defaultValue = "64", description = "Tokens decoded per run (default: ${DEFAULT-VALUE}).")
        int tokens;

        @Option(names = "--prompt-tokens", paramLabel = "N", defaultValue = "16", description = "Prompt length before decoding (default: ${DEFAULT-VALUE}).")
        int promptTokens;

        @Option(names = "--runs", paramLabel = "N", defaultValue = "3", description = "Measured runs; the median is reported (default: ${DEFAULT-VALUE}).")
        int runs;

        @Option(names = "--copy-mb", paramLabel = "MB", defaultValue = "512", description = "Size of the copied buffer for the bandwidth reference (default: ${DEFAULT-VALUE}).")
        int copyMb;

        @Spec
        CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            refuseOptionsBeforeSubcommand(spec);
            cpuModel.kernels(spec);
            new DecodeBench(tokens, promptTokens, runs, cpuModel.threads(), copyMb).run(cpuModel.dir());
            return 0;
        }
    }

    @Command(name = "lora", mixinStandardHelpOptions = true,
        description = "Multi-LoRA step throughput: N random adapters; base vs mixed vs per-adapter batches.")
    static final class Lora implements Callable<Integer> {
        @Mixin
        CpuModel cpuModel;

        @Option(names = "--adapters", paramLabel = "N", required = true, description = "Random adapters of --rank.")
        int adapters;

        @Option(names = "--batch", paramLabel = "B", defaultValue = "32", description = "Rows per decode step (default: ${DEFAULT-VALUE}).")
        int batch;

        @Option(names = "--rank", paramLabel = "R", defaultValue = "16", description = "Adapter rank, on all seven projections (default: ${DEFAULT-VALUE}).")
        int rank;

        @Option(names = "--distribution", paramLabel = "NAME", defaultValue = "distinct",
            description = "How rows pick adapters: distinct, uniform, zipf (1.5) or identical (default: ${DEFAULT-VALUE}).")
        String distribution;

        @Option(names = "--steps", paramLabel = "N", defaultValue = "8", description = "Timed decode steps per measurement (default: ${DEFAULT-VALUE}).")
        int steps;

        @Option(names = "--runs", paramLabel = "N", defaultValue = "3", description = "Measured rounds; medians are reported (default: ${DEFAULT-VALUE}).")
        int runs;

        @Spec
        CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            refuseOptionsBeforeSubcommand(spec);
            if (adapters < 1 || batch < 1 || rank < 1 || steps < 1 || runs < 1) {
                throw new ParameterException(spec.commandLine(), "--adapters, --batch, --rank, --steps and --runs must be at least 1");
            }
            LoraBench.rowAdapters(distribution, 1, 1, new SplittableRandom(1)); // validates --distribution
            Path dir = cpuModel.dir();
            LlamaModel llama = LlamaModel.load(dir);
            int nThreads = cpuModel.threads();
            DecodeBench.printModel(dir, llama, nThreads);
            try (CpuBackend cpu = new CpuBackend(nThreads, cpuModel.kernels(spec))) {
                new LoraBench(llama, adapters, batch, rank, distribution, steps, runs).run(cpu);
            }
            return 0;
        }
    }

    @Command(name = "serve", mixinStandardHelpOptions = true,
        description = "The engine under closed-loop clients at each concurrency level: TTFT, TPOT, tokens/s and the knee.")
    static final class Serve implements Callable<Integer> {
        @Mixin
        CpuModel cpuModel;

        @Option(names = "--concurrency", paramLabel = "C,...", split = ",", required = true,
            description = "Closed-loop clients driving the engine at each level in turn (e.g. 1,4,16,32,64).")
        List<Integer> concurrency;

        @Option(names = "--adapters", paramLabel = "N", defaultValue = "0",
            description = "N random adapters, one picked uniformly per request (0: base model only; default: ${DEFAULT-VALUE}).")
        int adapters;

        @Option(names = "--rank", paramLabel = "R", defaultValue = "16", description = "Adapter rank, on all seven projections (default: ${DEFAULT-VALUE}).")
        int rank;

        @Option(names = "--tokens", paramLabel = "N", defaultValue = "16", description = "Max tokens per request (default: ${DEFAULT-VALUE}).")
        int tokens;

        @Option(names = "--prompt-tokens", paramLabel = "N", defaultValue = "64", description = "Mean prompt length, uniform in [P/2, 3P/2] (default: ${DEFAULT-VALUE}).")
        int promptTokens;

        @Option(names = "--requests", paramLabel = "N", description = "Requests measured per level (default: 2 x concurrency, at least 16 and at most 96).")
        Integer requests;

        @Option(names = "--think-ms", paramLabel = "MS", defaultValue = "20", description = "Mean exponential think time before each request, ms (default: ${DEFAULT-VALUE}).")
        double thinkMs;

        @Option(names = "--max-batch", paramLabel = "N", defaultValue = "32", description = "Most sequences in the engine's running batch, as serve's --max-batch (default: ${DEFAULT-VALUE}).")
        int maxBatch;

        @Option(names = "--warmup", paramLabel = "N", defaultValue = "4", description = "Warm-up requests before measuring, not counted (default: ${DEFAULT-VALUE}).")
        int warmup;

        @Spec
        CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            refuseOptionsBeforeSubcommand(spec);
            int[] levels = validate();
            var cl = spec.commandLine();
            Path dir = cpuModel.dir();
            if (cpuModel.model != null && !Files.isDirectory(dir)) {
                throw new ParameterException(cl, "--model " + dir + " is not a directory");
            }
            LlamaModel llama;
            try {
                llama = LlamaModel.load(dir);
            } catch (RuntimeException | IOException e) {
                throw new ParameterException(cl, "cannot load model from " + dir + ": " + e.getMessage());
            }
            int longest = ConcurrencyBench.Workload.maxPrompt(promptTokens) + tokens;
            if (longest > llama.config().maxPositionEmbeddings()) {
                throw new ParameterException(cl, String.format("the longest prompt (%d) plus --tokens (%d) exceeds the model's %d positions",
                    ConcurrencyBench.Workload.maxPrompt(promptTokens), tokens, llama.config().maxPositionEmbeddings()));
            }
            int nThreads = cpuModel.threads();
            DecodeBench.printModel(dir, llama, nThreads);
            new ConcurrencyBench(llama, adapters, rank, maxBatch, warmup, requests, promptTokens, tokens, thinkMs)
                .run(new CpuBackend(nThreads, cpuModel.kernels(spec)), levels); // the engine closes the backend
            return 0;
        }

        /** Checks the options; returns the levels in increasing order, without repeats. */
        private int[] validate() {
            var cl = spec.commandLine();
            if (concurrency.isEmpty()) {
                throw new ParameterException(cl, "--concurrency needs at least one level, e.g. 1,4,16");
            }
            for (Integer c : concurrency) {
                if (c == null || c < 1) {
                    throw new ParameterException(cl, "--concurrency values must be at least 1, got " + c);
                }
            }
            if (adapters < 0) {
                throw new ParameterException(cl, "--adapters must be at least 0 with --concurrency, got " + adapters);
            }
            if (requests != null && requests < 1) {
                throw new ParameterException(cl, "--requests must be at least 1, got " + requests);
            }
            if (tokens < 1) {
                throw new ParameterException(cl, "--tokens must be at least 1, got " + tokens);
            }
            if (promptTokens < 1) {
                throw new ParameterException(cl, "--prompt-tokens must be at least 1, got " + promptTokens);
            }
            if (!(thinkMs >= 0) || Double.isInfinite(thinkMs)) {
                throw new ParameterException(cl, "--think-ms must be a finite number >= 0, got " + thinkMs);
            }
            if (rank < 1 || maxBatch < 1) {
                throw new ParameterException(cl, "--rank and --max-batch must be at least 1");
            }
            if (warmup < 0) {
                throw new ParameterException(cl, "--warmup must be at least 0, got " + warmup);
            }
            if (cpuModel.threads != null && cpuModel.threads < 1) {
                throw new ParameterException(cl, "--threads must be at least 1, got " + cpuModel.threads);
            }
            return concurrency.stream().mapToInt(Integer::intValue).sorted().distinct().toArray();
        }
    }

    @Command(name = "cluster", mixinStandardHelpOptions = true,
        description = {"Placement policies on N local serve processes (one cluster per policy, all load through node-0): "
            + "output tokens/s, TTFT p50/p99, nodes busy, requests per node, forwarded; then the forwarding overhead "
            + "(TTFT via a forwarding node minus direct, at concurrency 1)."})
    static final class Cluster implements Callable<Integer> {
        @Option(names = "--model", paramLabel = "DIR", description = "Model directory; its adapters/NAME directories are loaded as "
            + "--lora-modules (default: the demo model and its 4 demo adapters).")
        Path model;

        @Option(names = "--nodes", paramLabel = "N", defaultValue = "3", description = "serve processes per cluster, at least 2 (default: ${DEFAULT-VALUE}).")
        int nodes;

        @Option(names = "--policies", paramLabel = "P,...", split = ",", defaultValue = "consolidate,least-loaded,round-robin,adapter-affinity",
            description = "Placement policies, one cluster and one row each (default: ${DEFAULT-VALUE}).")
        List<String> policies;

        @Option(names = "--clients", paramLabel = "C", defaultValue = "8", description = "Concurrent closed-loop streaming clients (default: ${DEFAULT-VALUE}).")
        int clients;

        @Option(names = "--requests", paramLabel = "N", defaultValue = "64", description = "Measured requests per policy (default: ${DEFAULT-VALUE}).")
        int requests;

        @Option(names = "--tokens", paramLabel = "N", defaultValue = "64", description = "Max tokens per request, greedy (default: ${DEFAULT-VALUE}).")
        int tokens;

        @Option(names = "--max-batch", paramLabel = "N", defaultValue = "4",
            description = "Each node's --max-batch: one node's capacity in sequences (default: ${DEFAULT-VALUE}).")
        int maxBatch;

        @Option(names = "--warmup", paramLabel = "N", defaultValue = "4", description = "Warm-up requests through node-0 before each policy's measurement (default: ${DEFAULT-VALUE}).")
        int warmup;

        @Option(names = "--overhead-pairs", paramLabel = "N", defaultValue = "40",
            description = "Interleaved direct / forwarded request pairs for the overhead (default: ${DEFAULT-VALUE}).")
        int pairs;

        @Option(names = "--node-heap-mb", paramLabel = "MB", defaultValue = "384", description = "-Xmx of each serve process (default: ${DEFAULT-VALUE}).")
        int heapMb;

        @Spec
        CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            refuseOptionsBeforeSubcommand(spec);
            CommandLine cl = spec.commandLine();
            if (nodes < 2) {
                throw new ParameterException(cl, "--nodes must be at least 2 (a cluster, and a node to forward through), got " + nodes);
            }
            for (String p : policies) {
                try {
                    dev.loragateway.scheduler.placement.Placements.byName(p);
                } catch (IllegalArgumentException e) {
                    throw new ParameterException(cl, "--policies: " + e.getMessage());
                }
            }
            if (clients < 1 || requests < 1 || tokens < 1 || maxBatch < 1 || pairs < 1) {
                throw new ParameterException(cl, "--clients, --requests, --tokens, --max-batch and --overhead-pairs must be at least 1");
            }
            if (warmup < 0) {
                throw new ParameterException(cl, "--warmup must be at least 0, got " + warmup);
            }
            if (heapMb < 64) {
                throw new ParameterException(cl, "--node-heap-mb must be at least 64, got " + heapMb);
            }
            if (model != null && !Files.isDirectory(model)) {
                throw new ParameterException(cl, "--model " + model + " is not a directory");
            }
            Path dir = (model != null ? model : DemoCache.demo()).toAbsolutePath();
            Path work = Files.createTempDirectory("lora-bench-cluster");
            try {
                new ClusterBench(new ClusterBench.Options(nodes, List.copyOf(policies), clients, requests, tokens, maxBatch, warmup, pairs,
                    heapMb, dir, work), ClusterBench.adaptersOf(dir)).run(System.out);
            } finally {
                deleteTree(work);
            }
            return 0;
        }

        static void deleteTree(Path root) throws IOException {
            try (var s = Files.walk(root)) {
                for (Path p : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
                    Files.deleteIfExists(p);
                }
            }
        }
    }

    @Command(name = "profile", mixinStandardHelpOptions = true,
        description = {"A step-time profile of this machine for 'simulate --profile FILE': the real engine, built as serve builds it "
            + "for these options, under decode-heavy, prompt-heavy and long-context loads with 0 to 8 adapters; every step's decode rows, "
            + "prompt tokens, distinct adapters and wall time fitted to the simulator's linear step model; adapter load times from the "
            + "host tier and from disk. Prints the fitted terms and the fit's error, writes the profile JSON."})
    static final class ProfileCmd implements Callable<Integer> {
        @Option(names = "--out", paramLabel = "FILE", required = true, description = "Where the profile JSON goes.")
        Path outFile;

        @Option(names = "--model", paramLabel = "DIR", description = "Model directory; its adapters/NAME directories are the adapters "
            + "(default: the demo model serve serves without --model, and its demo adapters).")
        Path model;

        @Option(names = "--max-batch", paramLabel = "N", defaultValue = "32", description = "As serve (default: ${DEFAULT-VALUE}).")
        int maxBatch;

        @Option(names = "--max-num-batched-tokens", paramLabel = "N", defaultValue = "512", description = "As serve (default: ${DEFAULT-VALUE}).")
        int maxStepTokens;

        @Option(names = "--gpu-adapter-slots", paramLabel = "N", defaultValue = "64", description = "As serve (default: ${DEFAULT-VALUE}).")
        int slots;

        @Option(names = "--kv-cache-mb", paramLabel = "MB", description = "As serve (default: sized as serve sizes it).")
        Integer kvCacheMb;

        @Option(names = "--host-cache-mb", paramLabel = "MB", defaultValue = "1024", description = "As serve (default: ${DEFAULT-VALUE}).")
        int hostCacheMb;

        @Option(names = "--threads", paramLabel = "N", description = "Kernel threads (default: one per processor, as serve).")
        Integer threads;

        @Option(names = "--seconds", paramLabel = "S", defaultValue = "40",
            description = "Time of the engine loads, all together; the adapter loads come on top (default: ${DEFAULT-VALUE}).")
        double seconds;

        @Option(names = "--steps-out", paramLabel = "FILE", description = "Also write every recorded step as CSV (load, decode_rows, "
            + "prompt_tokens, adapters, attended, ms, predicted_ms), to see where the linear model misses.")
        Path stepsOut;

        @Option(names = "--from-steps", paramLabel = "FILE", split = ",",
            description = "Fit the steps a serving node recorded (serve --record-steps FILE, under real traffic: HTTP, "
                + "streaming and whatever else shares its cores included) instead of driving the engine here; the node "
                + "block and adapter load times are still measured here, so give the node's serve options too.")
        List<Path> fromSteps;

        @Spec
        CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            refuseOptionsBeforeSubcommand(spec);
            CommandLine cl = spec.commandLine();
            List<ProfileBench.Step> recorded = null;
            if (fromSteps != null) {
                recorded = new ArrayList<>();
                for (Path f : fromSteps) {
                    try {
                        recorded.addAll(BenchProfile.readSteps(f));
                    } catch (IllegalArgumentException | IOException e) {
                        throw new ParameterException(cl, "--from-steps " + f + ": " + e.getMessage());
                    }
                }
                if (recorded.size() < 20) {
                    throw new ParameterException(cl, "--from-steps: " + recorded.size() + " steps recorded, at least 20 are needed for a fit");
                }
            }
            for (Object[] o : new Object[][] {{"--max-batch", maxBatch}, {"--max-num-batched-tokens", maxStepTokens},
                {"--gpu-adapter-slots", slots}, {"--host-cache-mb", hostCacheMb}, {"--kv-cache-mb", kvCacheMb}, {"--threads", threads}}) {
                if (o[1] != null && (Integer) o[1] < 1) {
                    throw new ParameterException(cl, o[0] + " must be at least 1, got " + o[1]);
                }
            }
            if (!(seconds > 0) || seconds > 3600) {
                throw new ParameterException(cl, "--seconds must be in (0, 3600], got " + seconds);
            }
            if (model != null && !Files.isDirectory(model)) {
                throw new ParameterException(cl, "--model " + model + " is not a directory");
            }
            for (Path f : new Path[] {outFile, stepsOut}) {
                Path parent = f == null ? null : f.toAbsolutePath().getParent();
                if (parent != null && !Files.isDirectory(parent)) {
                    throw new ParameterException(cl, (f == outFile ? "--out " : "--steps-out ") + f + ": the directory " + parent
                        + " does not exist");
                }
            }
            Path dir = model != null ? model : DemoCache.demo();
            String id = model != null ? dir.toAbsolutePath().normalize().getFileName().toString() : DemoModel.MODEL_ID;
            LlamaModel llama;
            try {
                llama = LlamaModel.load(dir);
            } catch (RuntimeException | IOException e) {
                throw new ParameterException(cl, "cannot load model from " + dir + ": " + e.getMessage());
            }
            if (kvCacheMb != null && kvCacheMb * (1L << 20) < dev.loragateway.batcher.KvBlockPool.bytesPerBlock(llama.config(), 16) * 4) {
                throw new ParameterException(cl, "--kv-cache-mb " + kvCacheMb + " holds fewer than 4 KV blocks of this model");
            }
            List<String[]> adapters = new ArrayList<>();
            for (String a : ClusterBench.adaptersOf(dir)) {
                adapters.add(a.split("=", 2));
            }
            int nThreads = threads != null ? threads : Runtime.getRuntime().availableProcessors();
            DecodeBench.printModel(dir, llama, nThreads);
            String machine = BenchProfile.machine(nThreads);
            System.out.println("machine: " + machine);
            ProfileBench.Options o = new ProfileBench.Options(maxBatch, maxStepTokens, kvCacheMb == null ? 0 : kvCacheMb * (1L << 20), slots,
                Runtime.getRuntime().maxMemory() / 4, hostCacheMb * (1L << 20), nThreads, recorded != null ? 0 : seconds);
            Path scratch = Files.createTempDirectory("lora-bench-profile");
            ProfileBench.Result r;
            try {
                r = new ProfileBench(llama, o, System.out).run(id, adapters, scratch);
            } finally {
                Cluster.deleteTree(scratch);
            }
            String how = "measured by bench profile on " + machine;
            if (recorded != null) {
                r = new ProfileBench.Result(recorded, r.maxBatch(), r.maxStepTokens(), r.hostLoadMs(), r.diskLoadMs(), r.kvBlocks(), r.blockSize(),
                    r.kvBlockBytes(), r.adapterSlots(), r.hostAdapters(), r.adapterNames());
                how = "fitted by bench profile to " + recorded.size() + " steps a serving node recorded (serve --record-steps) on " + machine;
                System.out.println("steps from " + fromSteps + ": " + recorded.size());
            }
            BenchProfile.Fit fit = BenchProfile.fit(id + "-cpu", how, r);
            dev.loragateway.scheduler.sim.Profile p = fit.profile();
            BenchProfile.print(System.out, fit, r);
            Files.writeString(outFile, p.toJson());
            if (stepsOut != null) {
                Files.writeString(stepsOut, BenchProfile.csv(p, r.steps()));
                System.out.println("steps: " + stepsOut);
            }
            System.out.println("profile: " + outFile + " (simulate --profile " + outFile + ")");
            return 0;
        }
    }

    @Command(name = "gpu", mixinStandardHelpOptions = true,
        description = {"The CUDA device's tables: SGMV vs BGMV and gather+bmm, batch-1 GEMV bandwidth vs a device copy, "
            + "decode throughput through the CUDA forward pass.", "Exits 2 naming the reason when no CUDA device is usable."})
    static final class Gpu implements Callable<Integer> {
        @Mixin
        GpuBenchOptions options;

        @Spec
        CommandSpec spec;

        @Override
        public Integer call() {
            refuseOptionsBeforeSubcommand(spec);
            CommandLine cl = spec.commandLine();
            GpuBenchConfig config;
            try {
                config = options.resolve();
            } catch (IllegalArgumentException e) {
                throw new ParameterException(cl, e.getMessage(), e);
            }
            return GpuBench.run(config, CudaDevice.probe(), cl.getOut(), cl.getErr());
        }
    }
}
