package dev.loragateway.bench.gpu;

import dev.loragateway.kernels.cuda.CudaContext;
import dev.loragateway.kernels.cuda.DeviceMemoryExhaustedException;
import java.io.PrintWriter;
import java.util.Arrays;
import java.util.Collections;
import java.util.Optional;

/**
 * The decode-throughput table: tokens/s of a bf16 model at each batch size, base model vs one
 * adapter for every row vs many adapters, through a {@link GpuDecodeBench} (the CUDA forward pass).
 */
final class DecodeSection {
    /** Printed instead of the table when the bench was given no {@link GpuDecodeBench}. */
    static final String NEEDS_FORWARD_PASS = "decode throughput: needs the CUDA forward pass "
        + "(no GpuDecodeBench given): not measured";

    enum Mode { BASE, ONE, MANY }

    /** Row i's adapter in each mode: −1 (base), 0 (one), {@code i mod many} (many). */
    static int[] rowAdapters(Mode mode, int batch, int many) {
        int[] a = new int[batch];
        switch (mode) {
            case BASE -> Arrays.fill(a, -1);
            case ONE -> Arrays.fill(a, 0);
            case MANY -> {
                for (int i = 0; i < batch; i++) {
                    a[i] = i % many;
                }
            }
        }
        return a;
    }

    static Table table() {
        return new Table("model", "batch", "base tok/s", "1 adapter tok/s", "many: adapters", "many tok/s",
            "1 adapter / base", "many / 1 adapter", "many ms/step");
    }

    private final Optional<GpuDecodeBench> bench;
    private final GpuBenchConfig config;

    DecodeSection(Optional<GpuDecodeBench> bench, GpuBenchConfig config) {
        this.bench = bench;
        this.config = config;
    }

    /** Prints the table, or {@link #NEEDS_FORWARD_PASS}; {@code ctx} is handed to the GpuDecodeBench as is. */
    void run(CudaContext ctx, PrintWriter out) {
        if (bench.isEmpty()) {
            out.println("## Decode throughput");
            out.println();
            out.println(NEEDS_FORWARD_PASS);
            out.println();
            out.flush();
            return;
        }
        GpuDecodeBench b = bench.get();
        int maxBatch = Collections.max(config.decodeBatches());
        out.printf("## Decode throughput: %s; rank %d adapters on all projections, %d tokens of context, "
            + "%d warm-up + %d timed steps%n%n", b.describe(), config.decodeRank(), config.decodeContext(),
            config.warmup(), config.decodeSteps());
        out.flush();
        Table t = table();
        for (ModelShape shape : config.models()) {
            GpuDecodeBench.Spec spec = new GpuDecodeBench.Spec(maxBatch, config.manyAdapters(), config.decodeRank(),
                config.decodeContext());
            try (GpuDecodeBench.Model m = b.build(ctx, shape, spec)) {
                for (int batch : config.decodeBatches()) {
                    double base = tokensPerSecond(m, Mode.BASE, batch);
                    double one = tokensPerSecond(m, Mode.ONE, batch);
                    double many = tokensPerSecond(m, Mode.MANY, batch);
                    t.row(shape.name(), Integer.toString(batch), Table.num(base, 1), Table.num(one, 1),
                        Integer.toString(Math.min(batch, config.manyAdapters())), Table.num(many, 1),
                        Table.num(one / base, 2), Table.num(many / one, 2), Table.num(1000.0 * batch / many, 2));
                }
            } catch (DeviceMemoryExhaustedException e) {
                out.println(shape.name() + ": does not fit: " + e.getMessage());
            }
        }
        out.println(t.render());
        out.flush();
    }

    private double tokensPerSecond(GpuDecodeBench.Model m, Mode mode, int batch) {
        double seconds = m.decode(rowAdapters(mode, batch, config.manyAdapters()), config.warmup(), config.decodeSteps());
        return (double) batch * config.decodeSteps() / seconds;
    }
}
