package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.Tensor;

import dev.loragateway.kernels.DType;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The way the CPU matmul kernels load weight vectors on this JVM, chosen once per process.
 *
 * <p>The Vector API is an incubator module whose off-heap loads changed shape: a jar built for
 * Java 17 calls {@code FloatVector.fromByteBuffer}, which links on Java 25 and throws
 * {@code NoSuchMethodError} at its first call. The forms, fastest first:
 * <ol>
 *   <li>{@code MemorySegment}: {@code fromMemorySegment} over the mapped buffer (Java 22+;
 *       compiled by a JDK 22+ during the build, absent from a build made without one);</li>
 *   <li>{@code ByteBuffer}: {@code fromByteBuffer} (Java 17–19);</li>
 *   <li>{@code copy}: each vector's bytes copied into a per-call heap array and loaded with
 *       {@code fromArray} (any version: Java 20–21, or 22+ without the first form).</li>
 * </ol>
 * A form is chosen only after it has run every kernel it serves (GEMV and batched, F32, BF16 and
 * F16 weights) on a small random problem and matched a double-precision sum ({@link #exercise}),
 * so one that fails to link, or computes wrong numbers, is never chosen and the next is tried.
 *
 * <p>Design note: the kernels are written once against {@link WeightLoads} and take the chosen
 * form's instance and a per-call handle as parameters (see there for why two parameters and what
 * it costs on Java 17). Tests construct a {@link CpuBackend} over each {@link #available} form
 * directly; a server uses {@link #selected}, chosen and logged on first use.
 */
public final class CpuKernelForm {
    private static final Logger LOG = LoggerFactory.getLogger(CpuKernelForm.class);
    static final String SEGMENT_CLASS = "dev.loragateway.kernels.cpu.SegmentLoads";

    private final String name;
    private final String what;
    private final WeightLoads loads;

    CpuKernelForm(String name, String what, WeightLoads loads) {
        this.name = name;
        this.what = what;
        this.loads = loads;
    }

    /**
     * The form {@link CpuBackend} uses on this JVM, for logs and the startup self-check, e.g.
     * {@code "vector MemorySegment loads (Java 25, 512-bit vectors)"}; when no form works, a line
     * starting with {@code "no working CPU kernel form"} that names why each failed. The first
     * call chooses the form and logs the choice.
     */
    public static String describe() {
        return Chosen.SELECTION.description;
    }

    /** The chosen form; throws, naming each form's failure, when none works on this JVM. */
    static CpuKernelForm selected() {
        Selection s = Chosen.SELECTION;
        if (s.form == null) {
            throw new IllegalStateException(s.description);
        }
        return s.form;
    }

    /** Every form that works on this JVM, fastest first, each exercised anew (tests, benchmarks). */
    static List<CpuKernelForm> available() {
        List<CpuKernelForm> out = new ArrayList<>();
        for (Candidate c : candidates()) {
            try {
                CpuKernelForm f = c.make();
                exercise(f);
                out.add(f);
            } catch (Exception | LinkageError e) {
                // not available here
            }
        }
        return out;
    }

    /** The short name: {@code MemorySegment}, {@code ByteBuffer} or {@code copy}. */
    String name() {
        return name;
    }

    /** The loads the kernels call (stateless; {@link WeightLoads#open} makes each call's handle). */
    WeightLoads loads() {
        return loads;
    }

    @Override
    public String toString() {
        return name;
    }

    // ---- choosing --------------------------------------------------------------------------

    /** One candidate form by name; making it may fail to link (a class missing or too new for this JVM). */
    record Candidate(String name, Maker maker) {
        CpuKernelForm make() throws Exception {
            return maker.make();
        }
    }

    /** Makes a form. */
    @FunctionalInterface
    interface Maker {
        CpuKernelForm make() throws Exception;
    }

    /** The forms in order of preference. */
    static List<Candidate> candidates() {
        return List.of(
            new Candidate("MemorySegment", () -> new CpuKernelForm("MemorySegment", "vector MemorySegment loads", byName(SEGMENT_CLASS))),
            new Candidate("ByteBuffer", () -> new CpuKernelForm("ByteBuffer", "vector ByteBuffer loads", new BufferLoads())),
            new Candidate("copy", () -> new CpuKernelForm("copy", "vector loads through a per-call heap copy", new CopyLoads())));
    }

    /** The loads of a form class known only by name (absent, or too new for this JVM, when it fails). */
    private static WeightLoads byName(String className) throws ReflectiveOperationException {
        return Class.forName(className).asSubclass(WeightLoads.class).getDeclaredConstructor().newInstance();
    }

    /** The outcome of the choice: a form and its description, or no form and why. */
    static final class Selection {
        final CpuKernelForm form;
        final String description;
        final List<String> rejected;

        Selection(CpuKernelForm form, String description, List<String> rejected) {
            this.form = form;
            this.description = description;
            this.rejected = List.copyOf(rejected);
        }
    }

    /** The first candidate that runs every kernel correctly; the rest are not tried. */
    static Selection select(List<Candidate> candidates) {
        int java = Runtime.version().feature();
        List<String> rejected = new ArrayList<>();
        for (Candidate c : candidates) {
            try {
                CpuKernelForm f = c.make();
                exercise(f);
                return new Selection(f, f.what + " (Java " + java + ", " + MatMul.FS.vectorBitSize() + "-bit vectors)", rejected);
            } catch (Exception | LinkageError e) {
                rejected.add(c.name() + ": " + why(e));
            }
        }
        return new Selection(null, "no working CPU kernel form on Java " + Runtime.version() + ": " + String.join("; ", rejected), rejected);
    }

    private static String why(Throwable e) {
        if (e instanceof ClassNotFoundException) {
            return "not in this build (it was built without a JDK 22+)";
        }
        if (e instanceof UnsupportedClassVersionError) {
            return "needs a newer Java (" + e.getMessage().replaceAll(".*\\((class file version [0-9.]+)\\).*", "$1") + ")";
        }
        String m = String.valueOf(e.getMessage());
        int nl = m.indexOf('\n');
        if (nl >= 0) {
            m = m.substring(0, nl);
        }
        return e.getClass().getSimpleName() + ": " + (m.length() > 200 ? m.substring(0, 200) + "..." : m);
    }

    /** Chooses on first use and logs the choice once. */
    private static final class Chosen {
        static final Selection SELECTION = logged(select(candidates()));

        private static Selection logged(Selection s) {
            String others = s.rejected.isEmpty() ? "" : " (not chosen: " + String.join("; ", s.rejected) + ")";
            if (s.form == null) {
                LOG.error("CPU kernels: {}", s.description);
            } else if (s.form.name.equals("copy")) {
                LOG.warn("CPU kernels: {}, slower than direct loads{}; Java 17 or Java 22+ with a build made by a JDK 22+"
                    + " load weights directly", s.description, others);
            } else {
                LOG.info("CPU kernels: {}{}", s.description, others);
            }
            return s;
        }
    }

    // ---- exercising ------------------------------------------------------------------------

    /** Thrown when a form computes a wrong number. */
    static final class WrongResult extends Exception {
        WrongResult(String message) {
            super(message);
        }
    }

    /**
     * Runs every kernel {@code form} serves on a small random problem and compares each output with
     * a double-precision sum over the stored weights: F32, BF16 and F16 weights, the GEMV path
     * ({@link MatMul#columns}: 4-row and 1-row) and the batched path ({@link MatMulBatched}: 4-, 2-
     * and 1-row panels times 4- and 1-column blocks), an inner size of two whole 16-bit blocks plus
     * an odd tail. Throws {@link WrongResult}, or whatever the form threw (e.g. a
     * {@code NoSuchMethodError}).
     */
    static void exercise(CpuKernelForm form) throws WrongResult {
        Random rnd = new Random(0x5EED);
        int in = 2 * MatMul.BLOCK16 + 3;
        int out = 5;
        int rows = 7;
        for (DType dtype : DType.values()) {
            Tensor w = Tensor.of("probe", dtype, nonZero(rnd, out * in), out, in);
            float[] wf = w.toFloats();
            float[] x = nonZero(rnd, rows * in);
            boolean perm16 = dtype != DType.F32;
            float[] xs = x;
            if (perm16) {
                xs = new float[rows * in];
                for (int r = 0; r < rows; r++) {
                    MatMul.permute(x, r * in, in, xs, r * in);
                }
            }
            float[] gemv = new float[rows * out];
            WeightLoads ld = form.loads;
            MatMul.columns(dtype, ld, ld.open(w.buffer()), in, xs, rows, gemv, out, 0, out);
            float[] xq = new float[rows * in];
            MatMulBatched.pack(x, rows, in, perm16, xq);
            float[] gemm = new float[rows * out];
            MatMulBatched.batched(dtype, ld, ld.open(w.buffer()), in, xq, rows, gemm, out, 0, out);
            for (int r = 0; r < rows; r++) {
                for (int j = 0; j < out; j++) {
                    double sum = 0;
                    double magnitude = 0;
                    for (int k = 0; k < in; k++) {
                        double p = (double) x[r * in + k] * wf[j * in + k];
                        sum += p;
                        magnitude += Math.abs(p);
                    }
                    double tol = 1e-5 * magnitude + 1e-6;
                    check(form, dtype, "GEMV", r, j, sum, gemv[r * out + j], tol);
                    check(form, dtype, "batched", r, j, sum, gemm[r * out + j], tol);
                }
            }
        }
    }

    private static void check(CpuKernelForm form, DType dtype, String path, int r, int j, double expected, float actual, double tol)
        throws WrongResult {
        if (!(Math.abs(actual - expected) <= tol)) {
            throw new WrongResult(form.name + " form, " + dtype + " " + path + " out[" + r + "][" + j + "] = " + actual
                + ", expected " + expected + " (tolerance " + tol + ")");
        }
    }

    private static float[] nonZero(Random rnd, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) ((rnd.nextBoolean() ? 1 : -1) * (0.25 + rnd.nextDouble()));
        }
        return a;
    }
}
