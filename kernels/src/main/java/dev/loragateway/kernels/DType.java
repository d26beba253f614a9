package dev.loragateway.kernels;

import java.util.Locale;

/** Storage dtypes of weights. Activations are always float32; 16-bit weights are widened inside kernels. */
public enum DType {
    F32(4, "F32"),
    F16(2, "F16"),
    BF16(2, "BF16");

    private final int bytes;
    private final String safetensorsName;

    DType(int bytes, String safetensorsName) {
        this.bytes = bytes;
        this.safetensorsName = safetensorsName;
    }

    /** Bytes per element. */
    public int bytes() {
        return bytes;
    }

    /** The dtype's name in a safetensors header ("F32", "F16", "BF16"). */
    public String safetensorsName() {
        return safetensorsName;
    }

    /** Parses a safetensors header dtype; throws for the ones we do not compute with. */
    public static DType fromSafetensors(String name) {
        for (DType d : values()) {
            if (d.safetensorsName.equals(name)) {
                return d;
            }
        }
        throw new IllegalArgumentException("unsupported dtype " + name + " (supported: F32, F16, BF16)");
    }

    /** Parses a Hugging Face {@code torch_dtype} / CLI name: float32, float16, bfloat16 (also f32, f16, bf16). */
    public static DType parse(String name) {
        switch (name.toLowerCase(Locale.ROOT)) {
            case "float32": case "f32": case "fp32": return F32;
            case "float16": case "f16": case "fp16": case "half": return F16;
            case "bfloat16": case "bf16": return BF16;
            default: throw new IllegalArgumentException("unknown dtype '" + name + "' (use float32, float16 or bfloat16)");
        }
    }

    /** bfloat16 bits to float. */
    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }

    /** float to bfloat16 bits, round to nearest even (NaN stays NaN). */
    public static short floatToBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) {
            return (short) ((bits >>> 16) | 0x40);
        }
        int rounding = 0x7FFF + ((bits >>> 16) & 1);
        return (short) ((bits + rounding) >>> 16);
    }

    /** IEEE half bits to float (exact, subnormals, infinities and NaN included). */
    public static float f16ToFloat(short h) {
        int bits = h & 0xFFFF;
        int sign = (bits & 0x8000) << 16;
        int exp = (bits >>> 10) & 0x1F;
        int mant = bits & 0x3FF;
        if (exp == 0x1F) {
            return Float.intBitsToFloat(sign | 0x7F800000 | (mant << 13));
        }
        // normals and subnormals: shift into place, rescale by 2^112 (the exponent-bias difference)
        float magnitude = Float.intBitsToFloat(((exp << 10) | mant) << 13) * 0x1p112f;
        return sign == 0 ? magnitude : -magnitude;
    }

    /** float to IEEE half bits, round to nearest even. */
    public static short floatToF16(float f) {
        int bits = Float.floatToRawIntBits(f);
        int sign = (bits >>> 16) & 0x8000;
        float abs = Math.abs(f);
        if (Float.isNaN(f)) {
            return (short) (sign | 0x7E00);
        }
        if (abs >= 65520f) {
            return (short) (sign | 0x7C00);
        }
        if (abs < 0x1p-14f) { // subnormal half: quantum 2^-24
            int m = Math.round(abs * 0x1p24f); // Math.round is half-up; fix ties to even
            float exact = abs * 0x1p24f;
            if (exact - Math.floor(exact) == 0.5 && (m & 1) == 1) {
                m--;
            }
            return (short) (sign | m);
        }
        int b = Float.floatToRawIntBits(abs);
        int exp = ((b >>> 23) & 0xFF) - 127 + 15;
        int mant = b & 0x7FFFFF;
        int half = (exp << 10) | (mant >>> 13);
        int rest = mant & 0x1FFF;
        if (rest > 0x1000 || (rest == 0x1000 && (half & 1) == 1)) {
            half++;
        }
        return (short) (sign | half);
    }
}
