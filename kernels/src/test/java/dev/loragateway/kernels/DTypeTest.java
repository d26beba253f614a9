package dev.loragateway.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigDecimal;
import java.util.Random;
import java.util.function.IntToDoubleFunction;
import org.junit.jupiter.api.Test;

/**
 * bfloat16 and IEEE half conversions against an independent reference: each format decoded from
 * its sign/exponent/mantissa fields in double, and round-to-nearest-even written as "the nearer
 * of the two neighbouring representable values, the even bit pattern on a tie", compared exactly
 * with BigDecimal. Overflow follows IEEE: the value past the largest finite one counts as
 * 2^(emax+1) and rounds to infinity.
 */
class DTypeTest {
    private static final int F16_MAX_FINITE = 0x7BFF;
    private static final int F16_INF = 0x7C00;
    private static final int BF16_MAX_FINITE = 0x7F7F;
    private static final int BF16_INF = 0x7F80;

    /** IEEE half value of bit pattern h (1 sign, 5 exponent bits, 10 mantissa bits, bias 15). */
    static double halfValue(int h) {
        double sign = (h & 0x8000) != 0 ? -1 : 1;
        int e = (h >>> 10) & 0x1F;
        int m = h & 0x3FF;
        if (e == 0x1F) {
            return m == 0 ? sign * Double.POSITIVE_INFINITY : Double.NaN;
        }
        return sign * (e == 0 ? Math.scalb((double) m, -24) : Math.scalb((double) (1024 + m), e - 25));
    }

    /** bfloat16 value of bit pattern h (1 sign, 8 exponent bits, 7 mantissa bits, bias 127). */
    static double bf16Value(int h) {
        double sign = (h & 0x8000) != 0 ? -1 : 1;
        int e = (h >>> 7) & 0xFF;
        int m = h & 0x7F;
        if (e == 0xFF) {
            return m == 0 ? sign * Double.POSITIVE_INFINITY : Double.NaN;
        }
        return sign * (e == 0 ? Math.scalb((double) m, -133) : Math.scalb((double) (128 + m), e - 134));
    }

    /**
     * Reference round-to-nearest-even of a finite or infinite float into a 16-bit format whose
     * non-negative patterns {@code 0..maxFinite} increase in value; {@code overflow} is the value
     * the infinity pattern stands for when rounding (2^(emax+1)).
     */
    static int referenceRound(float f, IntToDoubleFunction value, int maxFinite, int inf, double overflow) {
        int sign = Float.floatToRawIntBits(f) < 0 ? 0x8000 : 0;
        double a = Math.abs((double) f);
        if (Double.isInfinite(a)) {
            return sign | inf;
        }
        int lo = 0;
        int hi = maxFinite;
        while (lo < hi) { // largest pattern whose value is <= a
            int mid = (lo + hi + 1) >>> 1;
            if (value.applyAsDouble(mid) <= a) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        BigDecimal x = new BigDecimal(a);
        BigDecimal below = new BigDecimal(value.applyAsDouble(lo));
        BigDecimal above = new BigDecimal(lo == maxFinite ? overflow : value.applyAsDouble(lo + 1));
        int up = lo == maxFinite ? inf : lo + 1;
        int c = x.subtract(below).compareTo(above.subtract(x));
        int chosen = c < 0 ? lo : c > 0 ? up : ((lo & 1) == 0 ? lo : up);
        return sign | chosen;
    }

    static int refF16(float f) {
        return referenceRound(f, DTypeTest::halfValue, F16_MAX_FINITE, F16_INF, 65536.0);
    }

    static int refBf16(float f) {
        return referenceRound(f, DTypeTest::bf16Value, BF16_MAX_FINITE, BF16_INF, Math.scalb(1.0, 128));
    }

    static int f16(float f) {
        return DType.floatToF16(f) & 0xFFFF;
    }

    static int bf16(float f) {
        return DType.floatToBf16(f) & 0xFFFF;
    }

    static boolean isHalfNaN(int h) {
        return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
    }

    static boolean isBf16NaN(int h) {
        return (h & 0x7F80) == 0x7F80 && (h & 0x7F) != 0;
    }

    @Test
    void decodersMatchFieldReferenceForAllPatterns() {
        for (int h = 0; h < 0x10000; h++) {
            float half = DType.f16ToFloat((short) h);
            float brain = DType.bf16ToFloat((short) h);
            if (isHalfNaN(h)) {
                assertTrue(Float.isNaN(half), "f16 " + Integer.toHexString(h) + " should decode to NaN");
            } else {
                assertEquals(Float.floatToRawIntBits((float) halfValue(h)), Float.floatToRawIntBits(half),
                    "f16 " + Integer.toHexString(h) + " decodes to " + half + ", expected " + halfValue(h));
            }
            if (isBf16NaN(h)) {
                assertTrue(Float.isNaN(brain), "bf16 " + Integer.toHexString(h) + " should decode to NaN");
            } else {
                assertEquals(Float.floatToRawIntBits((float) bf16Value(h)), Float.floatToRawIntBits(brain),
                    "bf16 " + Integer.toHexString(h) + " decodes to " + brain + ", expected " + bf16Value(h));
            }
        }
    }

    @Test
    void everyRepresentableValueRoundTripsExactly() {
        for (int h = 0; h < 0x10000; h++) {
            float half = DType.f16ToFloat((short) h);
            float brain = DType.bf16ToFloat((short) h);
            if (isHalfNaN(h)) {
                assertTrue(isHalfNaN(f16(half)), "f16 NaN " + Integer.toHexString(h) + " must stay NaN");
            } else {
                assertEquals(h, f16(half), "f16 pattern " + Integer.toHexString(h) + " (" + half + ")");
                assertEquals(Float.floatToRawIntBits(half), Float.floatToRawIntBits(DType.f16ToFloat((short) f16(half))));
            }
            if (isBf16NaN(h)) {
                assertTrue(isBf16NaN(bf16(brain)), "bf16 NaN " + Integer.toHexString(h) + " must stay NaN");
            } else {
                assertEquals(h, bf16(brain), "bf16 pattern " + Integer.toHexString(h) + " (" + brain + ")");
            }
        }
    }

    @Test
    void randomFloatsRoundToTheNearerNeighbour() {
        Random rnd = new Random(11);
        for (int i = 0; i < 200_000; i++) {
            // exponents from below the smallest half subnormal to past the largest half
            int e = -28 + rnd.nextInt(46);
            int bits = (rnd.nextBoolean() ? 0x80000000 : 0) | ((e + 127) << 23) | rnd.nextInt(1 << 23);
            float f = Float.intBitsToFloat(bits);
            assertEquals(refF16(f), f16(f), () -> "floatToF16(" + f + ") [bits " + Integer.toHexString(bits) + "]");
            assertEquals(refBf16(f), bf16(f), () -> "floatToBf16(" + f + ") [bits " + Integer.toHexString(bits) + "]");
        }
        for (int i = 0; i < 100_000; i++) { // any bit pattern: float subnormals, huge values, infinities
            float f = Float.intBitsToFloat(rnd.nextInt());
            if (Float.isNaN(f)) {
                continue;
            }
            assertEquals(refF16(f), f16(f), () -> "floatToF16(" + f + ")");
            assertEquals(refBf16(f), bf16(f), () -> "floatToBf16(" + f + ")");
        }
    }

    @Test
    void halfTiesGoToEvenAndNearTiesToTheNearer() {
        // every midpoint between adjacent finite halves (subnormal, normal, and max→inf) is a float
        for (int h = 0; h <= F16_MAX_FINITE; h++) {
            double lo = halfValue(h);
            double hi = h == F16_MAX_FINITE ? 65536.0 : halfValue(h + 1);
            float mid = (float) ((lo + hi) / 2);
            assertEquals((lo + hi) / 2, mid, 0.0, "midpoint must be exact");
            int even = (h & 1) == 0 ? h : h + 1;
            for (int s : new int[] {0, 0x8000}) {
                float m = s == 0 ? mid : -mid;
                assertEquals(s | even, f16(m), "tie " + m + " between halves " + Integer.toHexString(h) + "/" + Integer.toHexString(h + 1));
                assertEquals(s | (h + 1), f16(Math.copySign(Math.nextUp(mid), m)), "just above tie " + m);
                assertEquals(s | h, f16(Math.copySign(Math.nextDown(mid), m)), "just below tie " + m);
            }
        }
    }

    @Test
    void bf16TiesGoToEvenAndNearTiesToTheNearer() {
        for (int h = 0; h <= BF16_MAX_FINITE; h++) {
            int tieBits = (h << 16) | 0x8000; // exactly half-way to the next bf16 (or to 2^128)
            int even = (h & 1) == 0 ? h : h + 1;
            for (int s : new int[] {0, 0x8000}) {
                float tie = Float.intBitsToFloat((s << 16) | tieBits);
                assertEquals(s | even, bf16(tie), "tie " + tie);
                assertEquals(s | h, bf16(Float.intBitsToFloat((s << 16) | (tieBits - 1))), "just below tie " + tie);
                assertEquals(s | (h + 1), bf16(Float.intBitsToFloat((s << 16) | (tieBits + 1))), "just above tie " + tie);
            }
        }
    }

    @Test
    void subnormalHalvesAndFloatSubnormals() {
        for (int m = 1; m < 1024; m++) { // every positive subnormal half is m·2^-24
            float v = (float) Math.scalb((double) m, -24);
            assertEquals(m, f16(v));
            assertEquals(0x8000 | m, f16(-v));
            assertEquals(v, DType.f16ToFloat((short) m), 0f);
        }
        assertEquals(0x0400, f16(0x1p-14f), "smallest normal half");
        assertEquals(0x0400, f16(Math.nextDown(0x1p-14f)), "just below 2^-14 rounds up to the smallest normal");
        assertEquals(0, f16(0x1p-25f), "half the smallest subnormal is a tie to +0");
        assertEquals(1, f16(Math.nextUp(0x1p-25f)));
        assertEquals(0x8000, f16(-Float.MIN_VALUE), "tiny negative rounds to -0");
        assertEquals(refBf16(Float.MIN_VALUE), bf16(Float.MIN_VALUE), "float subnormal into bf16");
        assertEquals(0x0001, bf16(Float.intBitsToFloat(0x00010000)), "bf16 subnormal is exact");
    }

    @Test
    void infinitiesAndNaN() {
        assertEquals(F16_INF, f16(Float.POSITIVE_INFINITY));
        assertEquals(0x8000 | F16_INF, f16(Float.NEGATIVE_INFINITY));
        assertEquals(F16_INF, f16(65520f), "65520 is the tie between 65504 and 2^16: rounds to infinity");
        assertEquals(F16_MAX_FINITE, f16(Math.nextDown(65520f)));
        assertEquals(F16_INF, f16(Float.MAX_VALUE));
        assertEquals(BF16_INF, bf16(Float.POSITIVE_INFINITY));
        assertEquals(0x8000 | BF16_INF, bf16(Float.NEGATIVE_INFINITY));
        assertEquals(BF16_INF, bf16(Float.MAX_VALUE), "max float is past the bf16 overflow threshold");
        assertEquals(Float.POSITIVE_INFINITY, DType.f16ToFloat((short) F16_INF), 0f);
        assertEquals(Float.NEGATIVE_INFINITY, DType.bf16ToFloat((short) (0x8000 | BF16_INF)), 0f);
        // NaNs whose payload lies only in the low bits must not turn into infinity
        for (int bits : new int[] {0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7F801000, 0x7FBFFFFF}) {
            float nan = Float.intBitsToFloat(bits);
            assertTrue(isHalfNaN(f16(nan)), "f16 of NaN " + Integer.toHexString(bits) + " = " + Integer.toHexString(f16(nan)));
            assertTrue(isBf16NaN(bf16(nan)), "bf16 of NaN " + Integer.toHexString(bits) + " = " + Integer.toHexString(bf16(nan)));
        }
    }

    @Test
    void namesParse() {
        assertEquals(DType.BF16, DType.fromSafetensors("BF16"));
        assertEquals(DType.F16, DType.fromSafetensors("F16"));
        assertEquals(DType.F32, DType.fromSafetensors("F32"));
        assertEquals(DType.BF16, DType.parse("bfloat16"));
        assertEquals(DType.F16, DType.parse("Float16"));
        assertEquals(DType.F32, DType.parse("fp32"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> DType.fromSafetensors("I8")).getMessage().contains("I8"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> DType.parse("int4")).getMessage().contains("int4"));
        for (DType d : DType.values()) {
            assertEquals(d, DType.fromSafetensors(d.safetensorsName()));
            assertEquals(d == DType.F32 ? 4 : 2, d.bytes());
        }
    }
}
