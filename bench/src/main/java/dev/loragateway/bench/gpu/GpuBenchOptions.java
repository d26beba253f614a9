package dev.loragateway.bench.gpu;

import dev.loragateway.bench.gpu.GpuBenchConfig.Launch;
import dev.loragateway.bench.gpu.GpuBenchConfig.Section;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import picocli.CommandLine.Option;

/**
 * The GPU bench's options, a picocli mixin shared by {@code lora-gateway bench gpu} (and its alias
 * {@code bench --gpu}) and
 * {@link GpuBenchMain} ({@code gpu-check.sh bench}), so both spell them the same. Every option is
 * unset unless given: {@link #resolve()} fills the rest from {@link GpuBenchConfig#full()}, or from
 * {@link GpuBenchConfig#quick()} with {@code --gpu-quick}.
 */
public final class GpuBenchOptions {
    /** Names of every option here, for "given without --gpu" checks. */
    public static final String PREFIX = "--gpu-";

    @Option(names = "--gpu-quick", description = "GPU bench: tiny shapes and few iterations (a smoke test; explicit --gpu-* options still apply).")
    boolean quick;

    @Option(names = "--gpu-only", paramLabel = "SECTION,...", split = ",",
        description = "GPU bench: only these tables: sgmv, bandwidth, decode (default: all).")
    List<String> only;

    @Option(names = "--gpu-launch", paramLabel = "graph|stream",
        description = "GPU bench: queue each timed iteration as one replayed CUDA graph (default) or launch by launch.")
    String launch;

    @Option(names = "--gpu-hidden", paramLabel = "N", description = "GPU bench, SGMV: input and output width (default 4096; quick 256).")
    Integer hidden;

    @Option(names = "--gpu-batch", paramLabel = "N", description = "GPU bench, SGMV: rows per step (default 64; quick 16).")
    Integer batch;

    @Option(names = "--gpu-adapters", paramLabel = "D,...", split = ",",
        description = "GPU bench, SGMV: distinct adapter counts (default 1,2,4,8,16,32,64; quick 1,2,16).")
    List<Integer> adapters;

    @Option(names = "--gpu-ranks", paramLabel = "R,...", split = ",", description = "GPU bench, SGMV: ranks (default 8,16,32,64; quick 8,16).")
    List<Integer> ranks;

    @Option(names = "--gpu-models", paramLabel = "SHAPE,...", split = ",",
        description = "GPU bench, bandwidth and decode: 1b, 7b, tiny or hidden:intermediate:layers:heads:kvHeads:headDim:vocab (default 1b,7b; quick tiny).")
    List<String> models;

    @Option(names = "--gpu-decode-batches", paramLabel = "B,...", split = ",",
        description = "GPU bench, decode: sequences per step (default 1,2,4,8,16,32,64; quick 1,4).")
    List<Integer> decodeBatches;

    @Option(names = "--gpu-many-adapters", paramLabel = "N", description = "GPU bench, decode: adapters in the 'many' runs, row i uses adapter i mod N (default 64; quick 4).")
    Integer manyAdapters;

    @Option(names = "--gpu-decode-rank", paramLabel = "R", description = "GPU bench, decode: adapter rank (default 16; quick 8).")
    Integer decodeRank;

    @Option(names = "--gpu-context", paramLabel = "T", description = "GPU bench, decode: tokens in each sequence's KV cache when timing starts (default 512; quick 16).")
    Integer context;

    @Option(names = "--gpu-decode-steps", paramLabel = "N", description = "GPU bench, decode: timed steps per measurement (default 32; quick 2).")
    Integer decodeSteps;

    @Option(names = "--gpu-warmup", paramLabel = "N", description = "GPU bench: untimed iterations before each measurement (default 10; quick 1).")
    Integer warmup;

    @Option(names = "--gpu-iterations", paramLabel = "N", description = "GPU bench: timed iterations per SGMV or bandwidth measurement (default 100; quick 3).")
    Integer iterations;

    /**
     * The configuration these options describe. Throws {@link IllegalArgumentException} naming the
     * bad value (an unknown section or model, an adapter count above the batch, ...).
     */
    public GpuBenchConfig resolve() {
        GpuBenchConfig d = quick ? GpuBenchConfig.quick() : GpuBenchConfig.full();
        return new GpuBenchConfig(
            only == null ? d.sections() : sections(only),
            launch == null ? d.launch() : launch(launch),
            or(hidden, d.hidden()), or(batch, d.batch()),
            adapters == null ? d.adapterCounts() : adapters,
            ranks == null ? d.ranks() : ranks,
            models == null ? d.models() : models.stream().map(ModelShape::parse).toList(),
            decodeBatches == null ? d.decodeBatches() : decodeBatches,
            or(manyAdapters, d.manyAdapters()), or(decodeRank, d.decodeRank()), or(context, d.decodeContext()),
            or(decodeSteps, d.decodeSteps()), or(warmup, d.warmup()), or(iterations, d.iterations()));
    }

    private static int or(Integer v, int fallback) {
        return v != null ? v : fallback;
    }

    static EnumSet<Section> sections(List<String> names) {
        EnumSet<Section> s = EnumSet.noneOf(Section.class);
        List<String> unknown = new ArrayList<>();
        for (String n : names) {
            try {
                s.add(Section.valueOf(n.trim().toUpperCase(Locale.ROOT)));
            } catch (IllegalArgumentException e) {
                unknown.add(n);
            }
        }
        if (!unknown.isEmpty() || s.isEmpty()) {
            throw new IllegalArgumentException("--gpu-only takes sgmv, bandwidth, decode; got " + names);
        }
        return s;
    }

    static Launch launch(String name) {
        switch (name) {
            case "graph":
                return Launch.GRAPH;
            case "stream":
                return Launch.STREAM;
            default:
                throw new IllegalArgumentException("--gpu-launch must be graph or stream, got '" + name + "'");
        }
    }
}
