package dev.loragateway.bench.gpu;

import java.util.List;
import java.util.Set;

/**
 * What the GPU bench measures and how long: the three sections' shapes, warm-up and timed
 * iterations. {@link #full()} is the matrix; {@link #quick()} is tiny shapes and few
 * iterations, for a smoke test (the CUDA emulator, or a first look on a GPU).
 *
 * @param sections which tables to print
 * @param launch how timed work is queued: as one replayed CUDA graph per iteration, or launch by launch
 * @param hidden SGMV: the projection's input and output width
 * @param batch SGMV: rows in the step
 * @param adapterCounts SGMV: numbers of distinct adapters D; the rows are split into D nearly equal segments
 * @param ranks SGMV: adapter ranks
 * @param models bandwidth and decode: model shapes
 * @param decodeBatches decode: sequences per step
 * @param manyAdapters decode, "many" column: row i uses adapter {@code i mod manyAdapters}
 * @param decodeRank decode: adapter rank (all seven projections)
 * @param decodeContext decode: tokens already in each sequence's KV cache when the timed steps start
 * @param decodeSteps decode: timed steps per measurement
 * @param warmup untimed iterations before each measurement
 * @param iterations timed iterations per measurement (SGMV and bandwidth)
 */
public record GpuBenchConfig(Set<Section> sections, Launch launch, int hidden, int batch, List<Integer> adapterCounts,
                             List<Integer> ranks, List<ModelShape> models, List<Integer> decodeBatches, int manyAdapters,
                             int decodeRank, int decodeContext, int decodeSteps, int warmup, int iterations) {
    public enum Section { SGMV, BANDWIDTH, DECODE }

    public enum Launch { GRAPH, STREAM }

    public GpuBenchConfig {
        sections = Set.copyOf(sections);
        adapterCounts = List.copyOf(adapterCounts);
        ranks = List.copyOf(ranks);
        models = List.copyOf(models);
        decodeBatches = List.copyOf(decodeBatches);
        atLeast(1, hidden, "hidden");
        atLeast(1, batch, "batch");
        for (int d : adapterCounts) {
            if (d < 1 || d > batch) {
                throw new IllegalArgumentException("distinct adapters " + d + " must be 1 to the batch, " + batch
                    + " (each adapter gets at least one row)");
            }
        }
        for (int r : ranks) {
            atLeast(1, r, "rank");
        }
        for (int b : decodeBatches) {
            atLeast(1, b, "decode batch");
        }
        atLeast(1, manyAdapters, "many adapters");
        atLeast(1, decodeRank, "decode rank");
        atLeast(1, decodeContext, "decode context");
        atLeast(1, decodeSteps, "decode steps");
        atLeast(0, warmup, "warm-up iterations");
        atLeast(1, iterations, "iterations");
        if (sections.contains(Section.SGMV) && (adapterCounts.isEmpty() || ranks.isEmpty())) {
            throw new IllegalArgumentException("the SGMV table needs at least one adapter count and one rank");
        }
        if ((sections.contains(Section.BANDWIDTH) || sections.contains(Section.DECODE)) && models.isEmpty()) {
            throw new IllegalArgumentException("the bandwidth and decode tables need at least one model shape");
        }
        if (sections.contains(Section.DECODE) && decodeBatches.isEmpty()) {
            throw new IllegalArgumentException("the decode table needs at least one batch size");
        }
    }

    /** The matrix: D 1..64 at batch 64, ranks 8..64, hidden 4096; 1B and 7B shapes; batches 1..64. */
    public static GpuBenchConfig full() {
        return new GpuBenchConfig(Set.of(Section.values()), Launch.GRAPH, 4096, 64, List.of(1, 2, 4, 8, 16, 32, 64),
            List.of(8, 16, 32, 64), List.of(ModelShape.LLAMA_1B, ModelShape.LLAMA_7B), List.of(1, 2, 4, 8, 16, 32, 64),
            64, 16, 512, 32, 10, 100);
    }

    /** Tiny shapes, few iterations: exercises every code path in seconds (and on the emulator). */
    public static GpuBenchConfig quick() {
        return new GpuBenchConfig(Set.of(Section.values()), Launch.GRAPH, 256, 16, List.of(1, 2, 16), List.of(8, 16),
            List.of(ModelShape.TINY), List.of(1, 4), 4, 8, 16, 2, 1, 3);
    }

    private static void atLeast(int min, int v, String what) {
        if (v < min) {
            throw new IllegalArgumentException(what + " must be at least " + min + ", got " + v);
        }
    }
}
