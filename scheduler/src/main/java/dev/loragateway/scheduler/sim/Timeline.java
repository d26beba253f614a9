package dev.loragateway.scheduler.sim;

import java.util.Arrays;

/**
 * Nodes busy over time in a fixed number of buckets: each bucket keeps busy-node-seconds (for its
 * mean) and its peak. When time runs past the last bucket, pairs of buckets merge and each covers
 * twice the time, so the memory is fixed whatever the run's length.
 */
final class Timeline {
    static final int BUCKETS = 240;

    private double width;
    private final double[] area = new double[BUCKETS];
    private final int[] peak = new int[BUCKETS];
    private double end;

    Timeline(double initialWidth) {
        this.width = initialWidth > 0 ? initialWidth : 1;
    }

    /** {@code busy} nodes from {@code from} to {@code to} seconds. */
    void add(double from, double to, int busy) {
        while (to > width * BUCKETS) {
            coarsen();
        }
        end = Math.max(end, to);
        double t = from;
        while (t < to) {
            int b = Math.min(BUCKETS - 1, (int) (t / width));
            double stop = Math.min(to, (b + 1) * width);
            area[b] += busy * (stop - t);
            peak[b] = Math.max(peak[b], busy);
            if (stop <= t) {
                break;
            }
            t = stop;
        }
        if (from == to) {
            int b = Math.min(BUCKETS - 1, (int) (from / width));
            peak[b] = Math.max(peak[b], busy);
        }
    }

    private void coarsen() {
        for (int i = 0; i < BUCKETS / 2; i++) {
            area[i] = area[2 * i] + area[2 * i + 1];
            peak[i] = Math.max(peak[2 * i], peak[2 * i + 1]);
        }
        Arrays.fill(area, BUCKETS / 2, BUCKETS, 0);
        Arrays.fill(peak, BUCKETS / 2, BUCKETS, 0);
        width *= 2;
    }

    /** Seconds each bucket covers. */
    double width() {
        return width;
    }

    /** Mean busy nodes per bucket, up to the last time added. */
    double[] means() {
        int used = Math.max(1, Math.min(BUCKETS, (int) Math.ceil(end / width)));
        double[] m = new double[used];
        for (int i = 0; i < used; i++) {
            double w = Math.min(width, end - i * width);
            m[i] = w > 0 ? area[i] / w : 0;
        }
        return m;
    }
}
