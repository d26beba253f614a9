package dev.loragateway.kernels;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.Random;
import java.util.function.Supplier;

/** Random inputs and tolerance checks shared by the kernel tests. */
public final class Fixtures {
    /** Inner (reduction) sizes: odd ones and multiples of every vector width (8, 16 lanes; 16-bit blocks of 16, 32). */
    public static final int[] INNER = {1, 7, 15, 16, 33, 64, 100, 257, 1000};
    /** Row counts: one, below the 4-row block, a 4-row block plus one, many. */
    public static final int[] ROWS = {1, 3, 17, 130};

    private Fixtures() {
    }

    /** {@code n} values {@code offset + scale·N(0,1)}; never exactly zero. */
    public static float[] gaussian(Random rnd, int n, double scale, double offset) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            float v;
            do {
                v = (float) (offset + scale * rnd.nextGaussian());
            } while (v == 0f);
            a[i] = v;
        }
        return a;
    }

    /** Fails with {@code where} plus both values when {@code |actual − expected| > tol}. */
    public static void assertWithin(double expected, float actual, double tol, Supplier<String> where) {
        double diff = Math.abs(actual - expected);
        if (!(diff <= tol)) {
            fail(where.get() + ": expected " + expected + " but got " + actual + " (|Δ| " + diff + " > tolerance " + tol + ")");
        }
    }

    /** Fails when any element of {@code a} outside {@code [from, to)} is not {@code sentinel}. */
    public static void assertUntouchedOutside(float[] a, int from, int to, float sentinel, String what) {
        for (int i = 0; i < a.length; i++) {
            if ((i < from || i >= to) && Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(sentinel)) {
                fail(what + "[" + i + "] outside [" + from + ", " + to + ") was written: " + a[i]);
            }
        }
    }
}
