package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Tensor;

import dev.loragateway.kernels.DType;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;

/**
 * Throughput harness for {@link CpuBackend#matmul} (not a test: run its {@code main}). Times the
 * current kernel and the pre-tiling kernel ({@link MatMul#columns}, still the rows = 1 path) side by side, interleaved, on
 * random weights, and prints GFLOP/s ({@code 2·rows·out·in / t}) and, for rows = 1, GB/s of weight
 * bytes.
 *
 * <p>System properties: {@code shapes} (e.g. {@code 1024x1024,32000x1024}), {@code rows}
 * (e.g. {@code 1,8,16,32,64}), {@code dtype} (BF16, F16, F32), {@code threads}, {@code runs}
 * (timed runs per point, median reported), {@code warmReps}, {@code warmMs} (warm-up rounds and ms per kernel and row count), {@code ms} (minimum time per run), {@code best} (report the fastest run, not the median), {@code baseline}
 * ({@code false} to time only the current kernel), {@code form} (a {@link CpuKernelForm} name:
 * MemorySegment, ByteBuffer or copy; default the one chosen for this JVM).
 *
 * <pre>
 * mvn -q -o -pl kernels test-compile
 * java --add-modules jdk.incubator.vector -cp kernels/target/classes:kernels/target/test-classes:$CP \
 *     dev.loragateway.kernels.MatMulPerf
 * </pre>
 */
public final class MatMulPerf {
    static final boolean BEST = Boolean.getBoolean("best");

    private MatMulPerf() {
    }

    /** The pre-tiling {@code CpuBackend.matmul}, on {@link MatMul#columns} ({@link CpuBackend#columns}). */
    static final class Baseline implements AutoCloseable {
        private final CpuBackend cpu;

        Baseline(int threads, CpuKernelForm form) {
            cpu = new CpuBackend(threads, form);
        }

        void matmul(float[] x, int rows, Tensor w, float[] out) {
            cpu.columns(x, rows, w, out);
        }

        @Override
        public void close() {
            cpu.close();
        }
    }

    interface Kernel {
        void run(float[] x, int rows, Tensor w, float[] out);
    }

    static Tensor randomWeights(DType dtype, int outDim, int in, long seed) {
        Random rnd = new Random(seed);
        ByteBuffer b = ByteBuffer.allocateDirect(outDim * in * dtype.bytes()).order(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < (long) outDim * in; i++) {
            float v = (float) (rnd.nextGaussian() * 0.05);
            switch (dtype) {
                case F32: b.putFloat(v); break;
                case BF16: b.putShort(DType.floatToBf16(v)); break;
                default: b.putShort(DType.floatToF16(v)); break;
            }
        }
        b.flip();
        return new Tensor("w" + outDim + "x" + in, dtype, new int[] {outDim, in}, b);
    }

    /** Median seconds per call over {@code runs} runs of at least {@code minMs} each. */
    static double[] time(Kernel[] ks, float[] x, int rows, Tensor w, float[] out, int runs, double minMs) {
        int n = ks.length;
        // calibrate repetitions per run on the first kernel
        int reps = 1;
        while (true) {
            long t0 = System.nanoTime();
            for (int i = 0; i < reps; i++) {
                ks[0].run(x, rows, w, out);
            }
            double ms = (System.nanoTime() - t0) / 1e6;
            if (ms >= minMs) {
                break;
            }
            reps = (int) Math.min(1_000_000, Math.max(reps * 2L, (long) (reps * 1.2 * minMs / Math.max(ms, 1e-3))));
        }
        double[][] t = new double[n][runs];
        for (int run = 0; run < runs; run++) {
            for (int k = 0; k < n; k++) {
                long t0 = System.nanoTime();
                for (int i = 0; i < reps; i++) {
                    ks[k].run(x, rows, w, out);
                }
                t[k][run] = (System.nanoTime() - t0) / 1e9 / reps;
            }
        }
        double[] med = new double[n];
        for (int k = 0; k < n; k++) {
            Arrays.sort(t[k]);
            med[k] = BEST ? t[k][0] : t[k][runs / 2];
        }
        return med;
    }

    public static void main(String[] args) {
        String shapesArg = System.getProperty("shapes", "1024x1024,512x1024,2816x1024,1024x2816,32000x1024");
        String rowsArg = System.getProperty("rows", "1,8,16,32,64");
        DType dtype = DType.valueOf(System.getProperty("dtype", "BF16"));
        int threads = Integer.getInteger("threads", Runtime.getRuntime().availableProcessors());
        int runs = Integer.getInteger("runs", 7);
        double minMs = Double.parseDouble(System.getProperty("ms", "40"));
        int warmReps = Integer.getInteger("warmReps", 3);
        long warmMs = Long.getLong("warmMs", 150);
        boolean withBaseline = Boolean.parseBoolean(System.getProperty("baseline", "true"));
        int[] rowsList = Arrays.stream(rowsArg.split(",")).mapToInt(Integer::parseInt).toArray();
        List<int[]> shapes = new ArrayList<>();
        for (String s : shapesArg.split(",")) {
            String[] p = s.split("x");
            shapes.add(new int[] {Integer.parseInt(p[0]), Integer.parseInt(p[1])});
        }
        String formName = System.getProperty("form");
        // only the chosen form's class is loaded unless another is asked for, as in a server
        CpuKernelForm form = formName == null ? CpuKernelForm.selected() : CpuKernelForm.available().stream()
            .filter(f -> f.name().equals(formName)).findFirst()
            .orElseThrow(() -> new IllegalArgumentException("form " + formName + " is not available here: " + CpuKernelForm.available()));
        System.out.printf(Locale.ROOT, "dtype %s, %d threads, lanes %d, form %s, Java %s, median of %d runs >= %.0f ms%n",
            dtype, threads, MatMul.L, form, Runtime.version(), runs, minMs);
        try (CpuBackend cpu = new CpuBackend(threads, form); Baseline base = new Baseline(threads, form)) {
            Kernel cur = cpu::matmul;
            Kernel old = base::matmul;
            Kernel[] ks = withBaseline ? new Kernel[] {old, cur} : new Kernel[] {cur};
            System.out.printf(Locale.ROOT, "%-11s %5s %12s %12s %8s %10s %10s%n",
                "out x in", "rows", "old GFLOP/s", "new GFLOP/s", "speedup", "old GB/s", "new GB/s");
            for (int[] sh : shapes) {
                int outDim = sh[0];
                int in = sh[1];
                Tensor w = randomWeights(dtype, outDim, in, 42L + outDim * 31L + in);
                int maxRows = Arrays.stream(rowsList).max().getAsInt();
                Random rnd = new Random(7);
                float[] x = new float[maxRows * in];
                for (int i = 0; i < x.length; i++) {
                    x[i] = (float) rnd.nextGaussian();
                }
                float[] out = new float[maxRows * outDim];
                // warm-up: every kernel at every row count (C2 takes a while on the big kernels)
                for (int rep = 0; rep < warmReps; rep++) {
                    for (int rows : rowsList) {
                        for (Kernel k : ks) {
                            long t0 = System.nanoTime();
                            while (System.nanoTime() - t0 < warmMs * 1_000_000L) {
                                k.run(x, rows, w, out);
                            }
                        }
                    }
                }
                for (int rows : rowsList) {
                    double[] t = time(ks, x, rows, w, out, runs, minMs);
                    double flops = 2.0 * rows * outDim * in;
                    double gOld = withBaseline ? flops / t[0] / 1e9 : Double.NaN;
                    double gNew = flops / t[t.length - 1] / 1e9;
                    String gb = "";
                    if (rows == 1) {
                        double bytes = w.bytes();
                        gb = String.format(Locale.ROOT, " %10.1f %10.1f",
                            withBaseline ? bytes / t[0] / 1e9 : Double.NaN, bytes / t[t.length - 1] / 1e9);
                    }
                    System.out.printf(Locale.ROOT, "%-11s %5d %12.1f %12.1f %8.2f%s%n",
                        outDim + "x" + in, rows, gOld, gNew, gNew / gOld, gb);
                }
            }
        }
    }
}
