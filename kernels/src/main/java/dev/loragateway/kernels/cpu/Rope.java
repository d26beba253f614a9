package dev.loragateway.kernels.cpu;

/**
 * Rotary position embedding in Hugging Face's {@code rotate_half} convention: a head vector's
 * first and second halves are the pair coordinates, so for {@code i < d/2}
 * {@code x'[i] = x[i]·cos(p·f_i) − x[i+d/2]·sin(p·f_i)} and
 * {@code x'[i+d/2] = x[i+d/2]·cos(p·f_i) + x[i]·sin(p·f_i)}, with {@code f_i = θ^(−2i/d)}.
 * {@code rope_scaling} of type {@code llama3} rescales the frequencies once, at construction.
 */
public final class Rope {
    private final int headDim;
    private final double[] invFreq; // (headDim / 2)

    /** Llama-3 frequency scaling parameters (transformers' {@code rope_type: "llama3"}). */
    public record Llama3Scaling(double factor, double lowFreqFactor, double highFreqFactor, int originalMaxPositions) {
    }

    public Rope(int headDim, double theta, Llama3Scaling scaling) {
        if (headDim % 2 != 0) {
            throw new IllegalArgumentException("rotary head dimension must be even, got " + headDim);
        }
        this.headDim = headDim;
        int half = headDim / 2;
        invFreq = new double[half];
        for (int i = 0; i < half; i++) {
            invFreq[i] = 1.0 / Math.pow(theta, (2.0 * i) / headDim);
        }
        if (scaling != null) {
            double lowWavelen = scaling.originalMaxPositions() / scaling.lowFreqFactor();
            double highWavelen = scaling.originalMaxPositions() / scaling.highFreqFactor();
            for (int i = 0; i < half; i++) {
                double f = invFreq[i];
                double wavelen = 2 * Math.PI / f;
                if (wavelen < highWavelen) {
                    continue; // high frequencies unchanged
                }
                if (wavelen > lowWavelen) {
                    invFreq[i] = f / scaling.factor(); // low frequencies scaled down
                } else { // medium band: interpolate between scaled and unscaled
                    double smooth = (scaling.originalMaxPositions() / wavelen - scaling.lowFreqFactor())
                        / (scaling.highFreqFactor() - scaling.lowFreqFactor());
                    invFreq[i] = (1 - smooth) * f / scaling.factor() + smooth * f;
                }
            }
        }
    }

    public int headDim() {
        return headDim;
    }

    /** The (possibly scaled) frequency of pair {@code i}. */
    public double frequency(int i) {
        return invFreq[i];
    }

    /**
     * Rotates {@code heads} consecutive head vectors starting at {@code x[off]} for position
     * {@code pos}; {@code cos} and {@code sin} are scratch of at least headDim/2.
     */
    public void apply(float[] x, int off, int heads, int pos, float[] cos, float[] sin) {
        angles(pos, cos, sin, 0);
        rotate(x, off, heads, cos, sin, 0);
    }

    /** {@code cos[co..co + headDim/2)} and {@code sin[...]} of position {@code pos}'s angles. */
    public void angles(int pos, float[] cos, float[] sin, int co) {
        int half = headDim / 2;
        for (int i = 0; i < half; i++) {
            double a = pos * invFreq[i];
            cos[co + i] = (float) Math.cos(a);
            sin[co + i] = (float) Math.sin(a);
        }
    }

    /** {@link #apply} with the angles already in {@code cos[co..]} and {@code sin[co..]} ({@link #angles}). */
    public void rotate(float[] x, int off, int heads, float[] cos, float[] sin, int co) {
        int half = headDim / 2;
        for (int h = 0; h < heads; h++) {
            int base = off + h * headDim;
            for (int i = 0; i < half; i++) {
                float x1 = x[base + i];
                float x2 = x[base + half + i];
                float c = cos[co + i];
                float sn = sin[co + i];
                x[base + i] = x1 * c - x2 * sn;
                x[base + half + i] = x2 * c + x1 * sn;
            }
        }
    }
}
