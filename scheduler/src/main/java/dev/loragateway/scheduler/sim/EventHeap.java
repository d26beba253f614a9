package dev.loragateway.scheduler.sim;

import java.util.Arrays;

/**
 * The simulation's future: events keyed by time in a binary min-heap over primitive arrays (no
 * object per event). Events at the same time come out in the order they were added, so a run is
 * deterministic. An event is a {@code long} the caller packs (kind, node, value).
 */
final class EventHeap {
    private double[] time = new double[1024];
    private long[] seq = new long[1024];
    private long[] event = new long[1024];
    private int size;
    private long added;

    int size() {
        return size;
    }

    boolean isEmpty() {
        return size == 0;
    }

    void add(double t, long e) {
        if (size == time.length) {
            time = Arrays.copyOf(time, size * 2);
            seq = Arrays.copyOf(seq, size * 2);
            event = Arrays.copyOf(event, size * 2);
        }
        int i = size++;
        long s = added++;
        while (i > 0) { // sift up
            int p = (i - 1) >>> 1;
            if (!less(t, s, time[p], seq[p])) {
                break;
            }
            set(i, time[p], seq[p], event[p]);
            i = p;
        }
        set(i, t, s, e);
    }

    double peekTime() {
        return time[0];
    }

    long peekEvent() {
        return event[0];
    }

    /** Removes the earliest event. */
    void poll() {
        int last = --size;
        double t = time[last];
        long s = seq[last];
        long e = event[last];
        int i = 0;
        while (true) { // sift down
            int c = 2 * i + 1;
            if (c >= size) {
                break;
            }
            if (c + 1 < size && less(time[c + 1], seq[c + 1], time[c], seq[c])) {
                c++;
            }
            if (!less(time[c], seq[c], t, s)) {
                break;
            }
            set(i, time[c], seq[c], event[c]);
            i = c;
        }
        if (size > 0) {
            set(i, t, s, e);
        }
    }

    private void set(int i, double t, long s, long e) {
        time[i] = t;
        seq[i] = s;
        event[i] = e;
    }

    private static boolean less(double t1, long s1, double t2, long s2) {
        return t1 < t2 || (t1 == t2 && s1 < s2);
    }
}
