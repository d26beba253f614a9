package dev.loragateway.scheduler.sim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link Profile}: the fits recover known terms, the JSON round-trips, and a file without the newer fields still reads. */
class ProfileTest {
    @TempDir
    Path tmp;

    static final NodeConfig NODE = new NodeConfig(32, 512, 4096, 16, 64, 1000);

    /** Steps of random shapes timed by known terms, plus ±0.2 % noise (a small term must stand out of it). */
    static double[] steps(long[][] points, double[] terms, boolean attention, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        double[] ms = new double[points.length];
        for (int i = 0; i < points.length; i++) {
            int rows = r.nextInt(0, 33);
            int prompt = r.nextInt(4) == 0 ? r.nextInt(1, 513) : 0;
            int adapters = Math.min(rows, r.nextInt(0, 9));
            long attended = rows * (long) r.nextInt(1, 1000) + (long) prompt * (prompt + 1) / 2;
            points[i] = new long[] {rows, prompt, adapters, attention ? attended : 0};
            double t = terms[0] + terms[1] * rows + terms[2] * prompt + terms[3] * adapters + (attention ? terms[4] * attended : 0);
            ms[i] = t * (1 + 0.002 * (2 * r.nextDouble() - 1));
        }
        return ms;
    }

    @Test
    void theFitRecoversKnownTerms() {
        double[] terms = {0.05, 0.02, 0.015, 0.004, 0};
        long[][] points = new long[2000][];
        double[] ms = steps(points, terms, false, 1);
        int[][] ints = new int[points.length][];
        for (int i = 0; i < points.length; i++) {
            ints[i] = new int[] {(int) points[i][0], (int) points[i][1], (int) points[i][2]};
        }
        double[] c = Profile.fit(ints, ms);
        for (int k = 0; k < 4; k++) {
            assertEquals(terms[k], c[k], terms[k] * 0.05, "term " + k);
        }
    }

    @Test
    void theFitWithAttentionRecoversKnownTermsAndPinsAnUnmeasuredOneToZero() {
        double[] terms = {0.09, 0.02, 0.016, 0.01, 0.000125};
        long[][] points = new long[2000][];
        double[] ms = steps(points, terms, true, 2);
        double[] c = Profile.fitWithAttention(points, ms);
        for (int k = 0; k < 5; k++) {
            assertEquals(terms[k], c[k], terms[k] * 0.05, "term " + k);
        }
        for (long[] p : points) { // no adapters measured: that column is all 0, its term 0 (not a singular system)
            p[2] = 0;
        }
        assertEquals(0, Profile.fitWithAttention(points, ms)[3], "the adapter term");
    }

    @Test
    void aTermThatCostsNothingComesOutZeroNotNegative() {
        double[] terms = {0.1, 0.02, 0.01, 0, 0};
        long[][] points = new long[500][];
        double[] ms = steps(points, terms, false, 3);
        double[] c = Profile.fitWithAttention(points, ms);
        for (double v : c) {
            assertTrue(v >= 0, java.util.Arrays.toString(c));
        }
    }

    @Test
    void theJsonRoundTripsWithTheAttentionTermAndKvBlockBytes() throws Exception {
        Profile p = new Profile("demo-cpu", "measured", 0.09, 0.02, 0.016, 0.003, 0.000125, 0.06, 3.3, NODE, 8192);
        Path f = tmp.resolve("p.json");
        Files.writeString(f, p.toJson());
        assertEquals(p, Profile.load(f.toString()));
        assertEquals(0.09 + 0.02 * 8 + 0.016 * 100 + 0.003 * 2 + 0.000125 * 5000, p.stepMillis(8, 100, 2, 5000), 1e-12);
    }

    @Test
    void aProfileWithoutTheNewerFieldsReadsWithThemZero() {
        Profile punica = Profile.load(Profile.PUNICA);
        assertEquals(0, punica.attendedMs());
        assertEquals(0, punica.kvBlockBytes());
        assertFalse(punica.toJson().contains("per_attended_position") || punica.toJson().contains("kv_block_bytes"), punica.toJson());
        assertEquals(punica.stepMillis(32, 15, 32), punica.stepMillis(32, 15, 32, 100_000));
    }

    @Test
    void negativeKvBlockBytesAreRefusedNamingTheField() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
            () -> new Profile("x", "", 1, 1, 1, 1, 0, 1, 1, NODE, -1));
        assertTrue(e.getMessage().contains("kv_block_bytes"), e.getMessage());
    }
}
