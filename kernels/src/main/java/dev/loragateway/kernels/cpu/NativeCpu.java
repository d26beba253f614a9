package dev.loragateway.kernels.cpu;

import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.Tensor;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;
import java.util.Random;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The native CPU kernels (kernels/src/main/c, built by gcc during the Maven build into the jar as
 * {@code native/linux-x86_64/liblg_cpu.so}), called through JNI: a bf16 GEMM on AVX-512 BF16's
 * {@code vdpbf16ps}, which multiplies bf16 pairs directly where the Vector API must widen every
 * weight to float32 first. Used by {@link CpuBackend#matmul} for bf16 weights when {@link #usable};
 * everything else (and every CPU without {@code avx512_bf16}) runs the Vector API kernels, which
 * stay the portable path and the reference the native one is tested against.
 *
 * <p>Numerics: the activations are rounded to bf16 (nearest even) once per matmul, as llama.cpp
 * does for bf16 weights; products and sums are float32. Each output element is computed the same
 * way whatever the batch (see lg_cpu.c), so a row's result does not depend on its neighbours.
 *
 * <p>The library is loaded, and the kernel checked against a double-precision sum on a small
 * random problem, once per process on first use; the outcome is logged. {@code
 * -Dlora.cpu.native=off} (or {@code serve --cpu-kernels java}) keeps it unused.
 */
public final class NativeCpu {
    private static final Logger LOG = LoggerFactory.getLogger(NativeCpu.class);
    /** The system property that turns the native kernels off ({@code off}) or requires them ({@code on}). */
    public static final String PROPERTY = "lora.cpu.native";
    static final String RESOURCE = "/native/linux-x86_64/liblg_cpu.so";
    static final int AVX512_BF16 = 1;

    private NativeCpu() {
    }

    static native int features();

    /** {@code dst[from..to)} (bf16) = {@code x[from..to)} rounded to nearest even. */
    static native void toBf16(float[] x, int from, int to, ByteBuffer dst);

    /** {@code gate[i] = silu(gate[i]) · up[i]} for i in {@code [from, to)} (vectorized exponential). */
    static native void siluMul(float[] gate, float[] up, int from, int to);

    static native void gemmBf16(ByteBuffer x, int rows, int in, ByteBuffer w, int c0, int c1, float[] out, int outStride);

    static native void attend(float[] q, int q0, int qDim, int rows, int[] len, int[] from, int lo, float[] keys, float[] values,
                              int[] table, int blockSize, int kvDim, int headDim, int group, int g0, int g1, float scale, float[] out, int o0);

    /**
     * LoRA of one (layer, module) over bf16 adapters in {@link LoraSlotPool}'s packed rows for
     * vector length {@code lanes} (8 or 16): the segments {@code [s0, s1)} clipped to rows
     * {@code [r0, r1)}, segment g with slot {@code segSlot[g]}, A at {@code segA[g]}, Bᵀ at
     * {@code segB[g]}, rank {@code segRank[g]} (0: skipped), scaling {@code segScale[g]}.
     */
    static native void loraBf16(int[][] packed, int lanes, int[] segStart, int[] segSlot, int[] segA, int[] segB, int[] segRank,
                                float[] segScale, int s0, int s1, int r0, int r1, int in, int out, float[] x, int xs, float[] t,
                                int ts, float[] y, int ys);

    /** Whether the library loaded, this CPU runs its bf16 GEMM, and it computed the right numbers. */
    public static boolean available() {
        return Loaded.STATE.available;
    }

    /**
     * Whether {@link CpuBackend}s made without an explicit choice use the native kernels: {@link
     * #available} and not turned off by {@code -Dlora.cpu.native=off}.
     */
    public static boolean usedByDefault() {
        String p = System.getProperty(PROPERTY, "auto").toLowerCase(Locale.ROOT);
        if (p.equals("off") || p.equals("false") || p.equals("java")) {
            return false;
        }
        return available();
    }

    /**
     * In words, for logs and the startup self-check: e.g. {@code "native bf16 GEMM (AVX-512 BF16)
     * for bf16 weights"}, or why not ({@code "not used: ..."}).
     */
    public static String describe() {
        State s = Loaded.STATE;
        if (!s.available) {
            return "native kernels not used: " + s.why;
        }
        if (!usedByDefault()) {
            return "native kernels turned off (-D" + PROPERTY + "=off); available: " + s.why;
        }
        return s.why;
    }

    /** Whether a matmul over {@code w} can take the native path (bf16 in a direct buffer). */
    static boolean serves(Tensor w) {
        return w.dtype() == DType.BF16 && w.buffer().isDirect();
    }

    // ---- loading ---------------------------------------------------------------------------

    private static final class State {
        final boolean available;
        final String why;

        State(boolean available, String why) {
            this.available = available;
            this.why = why;
        }
    }

    private static final class Loaded {
        static final State STATE = logged(load());

        private static State logged(State s) {
            if (s.available) {
                LOG.info("CPU kernels: {}", s.why);
            } else {
                LOG.info("CPU kernels: no native kernels ({}); the Vector API kernels run every matmul", s.why);
            }
            return s;
        }
    }

    private static State load() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "");
        if (!os.contains("linux") || !(arch.equals("amd64") || arch.equals("x86_64"))) {
            return new State(false, "built for Linux x86-64 only, this is " + os + " " + arch);
        }
        try (InputStream in = NativeCpu.class.getResourceAsStream(RESOURCE)) {
            if (in == null) {
                return new State(false, "not in this build (gcc was not found when it was built)");
            }
            Path dir = Files.createTempDirectory("lora-gateway-native");
            Path lib = dir.resolve("liblg_cpu.so");
            Files.copy(in, lib, StandardCopyOption.REPLACE_EXISTING);
            System.load(lib.toAbsolutePath().toString());
            // the mapping stays valid after the file is gone
            Files.deleteIfExists(lib);
            Files.deleteIfExists(dir);
        } catch (IOException | LinkageError | SecurityException e) {
            return new State(false, "the library did not load: " + e);
        }
        int f;
        try {
            f = features();
        } catch (LinkageError e) {
            return new State(false, "the library does not link: " + e);
        }
        if ((f & AVX512_BF16) == 0) {
            return new State(false, "this CPU has no AVX-512 BF16 (avx512_bf16)");
        }
        String wrong = exercise();
        if (wrong != null) {
            return new State(false, "the bf16 GEMM computed a wrong number: " + wrong);
        }
        return new State(true, "native bf16 GEMM on AVX-512 BF16 (vdpbf16ps) for bf16 weights");
    }

    /**
     * Runs the GEMM on a small random problem with a tail in every dimension and compares it with a
     * double-precision sum of the same bf16 numbers; null when all match, else the first mismatch.
     */
    static String exercise() {
        Random rnd = new Random(0xB16);
        int in = 75;
        int out = 13;
        int rows = 7;
        float[] wv = new float[out * in];
        float[] x = new float[rows * in];
        for (int i = 0; i < wv.length; i++) {
            wv[i] = (float) ((rnd.nextBoolean() ? 1 : -1) * (0.25 + rnd.nextDouble()));
        }
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) ((rnd.nextBoolean() ? 1 : -1) * (0.25 + rnd.nextDouble()));
        }
        Tensor w = Tensor.of("probe", DType.BF16, wv, out, in);
        ByteBuffer xb = ByteBuffer.allocateDirect(rows * in * 2).order(ByteOrder.LITTLE_ENDIAN);
        toBf16(x, 0, rows * in, xb);
        float[] got = new float[rows * out];
        gemmBf16(xb, rows, in, w.buffer(), 0, out, got, out);
        float[] wf = w.toFloats();
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < out; j++) {
                double sum = 0;
                double mag = 0;
                for (int k = 0; k < in; k++) {
                    double p = (double) DType.bf16ToFloat(xb.getShort(2 * (r * in + k))) * wf[j * in + k];
                    sum += p;
                    mag += Math.abs(p);
                }
                float xr = DType.bf16ToFloat(xb.getShort(2 * (r * in)));
                if (Math.abs(xr - x[r * in]) > Math.abs(x[r * in]) * 0x1p-8) {
                    return "x[" + r + "][0] = " + x[r * in] + " became " + xr + " in bf16";
                }
                if (!(Math.abs(got[r * out + j] - sum) <= 1e-5 * mag + 1e-6)) {
                    return "out[" + r + "][" + j + "] = " + got[r * out + j] + ", expected " + sum;
                }
            }
        }
        return null;
    }
}
