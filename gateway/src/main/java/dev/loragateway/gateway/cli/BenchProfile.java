package dev.loragateway.gateway.cli;

import dev.loragateway.bench.ProfileBench;
import dev.loragateway.scheduler.sim.NodeConfig;
import dev.loragateway.scheduler.sim.Profile;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * {@code bench profile}'s second half: the simulator's step model fitted ({@link Profile#fit}) to
 * the steps {@link ProfileBench} recorded on the real engine, how well it fits (relative error of
 * predicted against measured step time, overall and per load), and the profile file.
 *
 * <p>The fit is least squares over every recorded step, each weighing the same: it keeps the total
 * time of all steps (what throughput follows) while a single sub-millisecond step may be far off
 * (the machine's noise: a thread woken late, a collection). So both are printed: the per-step
 * relative error and each load's total-time error.
 */
final class BenchProfile {
    private BenchProfile() {
    }

    /** The CPU flags that decide which kernels run fast, in this order, those the machine has. */
    static final List<String> FLAGS = List.of("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16");

    /** Steps slower than this many times the fitted time are interference, not the engine (see {@link #fit}). */
    static final double OUTLIER = 2;

    /**
     * A fitted profile and the steps it was fitted to.
     *
     * @param profile the profile (with the attention term)
     * @param linear  the same steps fitted without the attention term, to show what that term buys
     * @param kept    the steps fitted to: all but the outliers
     * @param dropped steps left out as interference
     */
    record Fit(Profile profile, Profile linear, List<ProfileBench.Step> kept, int dropped) {
    }

    /**
     * The profile of measured steps and loads: the step terms fitted with the attention term
     * ({@link Profile#fitWithAttention}), median load times, the engine's capacities.
     *
     * <p>Least squares follows the mean, and on a shared machine a step's time has a long tail
     * that is not the engine's: a step that lost its core to another process or met a collection
     * takes 10–50× its median (seen here: p50 0.045 ms, p99 2.7 ms for one decode row while a
     * build ran beside). So the fit is repeated three times, each over the steps that took at most
     * {@value #OUTLIER}× what the previous fit predicts; the count left out is printed.
     */
    static Fit fit(String name, String source, ProfileBench.Result r) {
        NodeConfig node = new NodeConfig(r.maxBatch(), r.maxStepTokens(), r.kvBlocks(), r.blockSize(), r.adapterSlots(), r.hostAdapters());
        List<ProfileBench.Step> kept = r.steps();
        Profile p = null;
        for (int round = 0; round < 4; round++) {
            if (p != null) {
                Profile prev = p;
                List<ProfileBench.Step> next = r.steps().stream().filter(s -> s.millis() <= OUTLIER * predicted(prev, s)).toList();
                kept = next.size() >= Math.min(r.steps().size(), 16) ? next : kept;
            }
            long[][] points = new long[kept.size()][];
            double[] ms = new double[points.length];
            for (int i = 0; i < points.length; i++) {
                ProfileBench.Step s = kept.get(i);
                points[i] = new long[] {s.decodeRows(), s.promptTokens(), s.adapters(), s.attended()};
                ms[i] = s.millis();
            }
            double[] c = Profile.fitWithAttention(points, ms);
            p = new Profile(name, source, c[0], c[1], c[2], c[3], c[4], loadMs(r.hostLoadMs()), loadMs(r.diskLoadMs()), node, r.kvBlockBytes());
        }
        int[][] points = new int[kept.size()][];
        double[] ms = new double[points.length];
        for (int i = 0; i < points.length; i++) {
            ProfileBench.Step s = kept.get(i);
            points[i] = new int[] {s.decodeRows(), s.promptTokens(), s.adapters()};
            ms[i] = s.millis();
        }
        double[] c = Profile.fit(points, ms);
        Profile linear = new Profile(name, source, c[0], c[1], c[2], c[3], 0, p.hostLoadMs(), p.diskLoadMs(), node, r.kvBlockBytes());
        return new Fit(p, linear, kept, r.steps().size() - kept.size());
    }

    private static double loadMs(double[] sorted) {
        return sorted.length == 0 ? 0 : median(sorted);
    }

    /** Relative errors |predicted − measured| / measured of {@code p} over {@code steps}, sorted. */
    static double[] relativeErrors(Profile p, List<ProfileBench.Step> steps) {
        double[] e = new double[steps.size()];
        for (int i = 0; i < e.length; i++) {
            ProfileBench.Step s = steps.get(i);
            e[i] = Math.abs(predicted(p, s) - s.millis()) / s.millis();
        }
        Arrays.sort(e);
        return e;
    }

    static double predicted(Profile p, ProfileBench.Step s) {
        return p.stepMillis(s.decodeRows(), s.promptTokens(), s.adapters(), s.attended());
    }

    /** Σ predicted / Σ measured − 1 over {@code steps}: how far off the time of the whole load is (what throughput follows). */
    static double totalError(Profile p, List<ProfileBench.Step> steps) {
        double measured = 0;
        double predicted = 0;
        for (ProfileBench.Step s : steps) {
            measured += s.millis();
            predicted += predicted(p, s);
        }
        return predicted / measured - 1;
    }

    /** The nearest-rank percentile of sorted values; NaN when there are none. */
    static double percentile(double[] sorted, double q) {
        if (sorted.length == 0) {
            return Double.NaN;
        }
        int rank = (int) Math.ceil(q / 100 * sorted.length - 1e-9);
        return sorted[Math.max(0, Math.min(sorted.length, rank) - 1)];
    }

    static double median(double[] sorted) {
        return percentile(sorted, 50);
    }

    /**
     * Prints the fitted terms, the fit's error (per step: median and p90 of the relative error;
     * per load: the error of its total time), the same without the attention term, and the load times.
     */
    static void print(PrintStream out, Fit fit, ProfileBench.Result r) {
        Profile p = fit.profile();
        Profile linear = fit.linear();
        out.println();
        out.printf(Locale.ROOT, "%d of %d steps took more than %.0f× the fitted time and were left out (interference: another process "
            + "on the core, a collection)%n", fit.dropped(), r.steps().size(), OUTLIER);
        out.printf(Locale.ROOT, "fitted over %d steps: step ms = %.4f + %.4f × decode rows + %.5f × prompt tokens + %.4f × adapters "
            + "+ %.3g × positions attended%n", fit.kept().size(), p.baseMs(), p.decodeRowMs(), p.promptTokenMs(), p.adapterMs(),
            p.attendedMs());
        double[] all = relativeErrors(p, fit.kept());
        double[] lin = relativeErrors(linear, fit.kept());
        out.printf(Locale.ROOT, "fit error per step |predicted − measured| / measured: median %.0f %%, p90 %.0f %%; "
            + "total time of the steps fitted %+.1f %%, of all steps %+.1f %%%n", 100 * median(all), 100 * percentile(all, 90),
            100 * totalError(p, fit.kept()), 100 * totalError(p, r.steps()));
        out.printf(Locale.ROOT, "without the attention term: %.4f + %.4f × decode rows + %.5f × prompt tokens + %.4f × adapters; "
                + "per step median %.0f %%, p90 %.0f %%%n", linear.baseMs(), linear.decodeRowMs(), linear.promptTokenMs(), linear.adapterMs(),
            100 * median(lin), 100 * percentile(lin, 90));
        out.println();
        out.println("| load | steps | mean decode rows | mean prompt tokens | mean adapters | mean positions attended | measured ms (mean) "
            + "| predicted ms (mean) | total time error | step error median / p90 | without attention: total time error |");
        out.println("|---|---|---|---|---|---|---|---|---|---|---|");
        Map<String, List<ProfileBench.Step>> byLoad = new LinkedHashMap<>();
        for (ProfileBench.Step s : fit.kept()) {
            byLoad.computeIfAbsent(s.load(), k -> new ArrayList<>()).add(s);
        }
        byLoad.forEach((load, steps) -> {
            double rows = 0;
            double prompt = 0;
            double adapters = 0;
            double attended = 0;
            double measured = 0;
            double predicted = 0;
            for (ProfileBench.Step s : steps) {
                rows += s.decodeRows();
                prompt += s.promptTokens();
                adapters += s.adapters();
                attended += s.attended();
                measured += s.millis();
                predicted += predicted(p, s);
            }
            int n = steps.size();
            double[] e = relativeErrors(p, steps);
            out.printf(Locale.ROOT, "| %s | %d | %.1f | %.1f | %.1f | %.0f | %.3f | %.3f | %+.0f %% | %.0f %% / %.0f %% | %+.0f %% |%n", load, n,
                rows / n, prompt / n, adapters / n, attended / n, measured / n, predicted / n, 100 * totalError(p, steps), 100 * median(e),
                100 * percentile(e, 90), 100 * totalError(linear, steps));
        });
        out.println();
        if (r.hostLoadMs().length > 0) {
            out.printf(Locale.ROOT, "adapter loads into a slot (%d each; %s): from the host tier median %.3f ms (p90 %.3f), "
                    + "from disk median %.3f ms (p90 %.3f; the OS page cache is warm)%n", r.hostLoadMs().length,
                String.join(", ", r.adapterNames()), median(r.hostLoadMs()), percentile(r.hostLoadMs(), 90), median(r.diskLoadMs()),
                percentile(r.diskLoadMs(), 90));
        } else {
            out.println("adapter loads: none measured (the model has no adapters/ directory): host and disk load costs are 0");
        }
        out.printf(Locale.ROOT, "node: max batch %d, max-num-batched-tokens %d, %d KV blocks of %d positions (%d bytes each), "
                + "%d adapter slots, %d adapters in the host tier%n", p.node().maxBatch(), p.node().maxStepTokens(), p.node().kvBlocks(),
            p.node().blockSize(), p.kvBlockBytes(), p.node().adapterSlots(), p.node().hostAdapters());
    }

    /**
     * Steps from a CSV with the columns {@code load,decode_rows,prompt_tokens,adapters,attended,ms}
     * (a header line first; further columns ignored): {@code serve --record-steps} or {@code --steps-out}.
     */
    static List<ProfileBench.Step> readSteps(Path file) throws java.io.IOException {
        List<String> lines = java.nio.file.Files.readAllLines(file);
        if (lines.isEmpty() || !lines.get(0).startsWith("load,decode_rows,prompt_tokens,adapters,attended,ms")) {
            throw new IllegalArgumentException("not a steps file: its first line must be load,decode_rows,prompt_tokens,adapters,attended,ms");
        }
        List<ProfileBench.Step> steps = new java.util.ArrayList<>();
        for (int i = 1; i < lines.size(); i++) {
            String line = lines.get(i);
            if (line.isBlank()) {
                continue;
            }
            String[] c = line.split(",");
            try {
                if (c.length < 6) {
                    throw new NumberFormatException("6 columns expected, got " + c.length);
                }
                steps.add(new ProfileBench.Step(c[0], Integer.parseInt(c[1]), Integer.parseInt(c[2]), Integer.parseInt(c[3]),
                    Long.parseLong(c[4]), Double.parseDouble(c[5])));
            } catch (NumberFormatException e) {
                if (i == lines.size() - 1) {
                    continue; // a node killed mid-write leaves a partial last line
                }
                throw new IllegalArgumentException("line " + (i + 1) + ": " + e.getMessage());
            }
        }
        return steps;
    }

    /** The steps as CSV, with the profile's prediction beside each. */
    static String csv(Profile p, List<ProfileBench.Step> steps) {
        StringBuilder b = new StringBuilder("load,decode_rows,prompt_tokens,adapters,attended,ms,predicted_ms\n");
        for (ProfileBench.Step s : steps) {
            b.append(String.format(Locale.ROOT, "%s,%d,%d,%d,%d,%.4f,%.4f%n", s.load(), s.decodeRows(), s.promptTokens(), s.adapters(),
                s.attended(), s.millis(), predicted(p, s)));
        }
        return b.toString();
    }

    /**
     * One line: the CPU model, its cores, the flags of {@link #FLAGS} it has, threads, Java and the
     * date (the profile's {@code source}).
     */
    static String machine(int threads) {
        String model = "unknown CPU";
        List<String> flags = new ArrayList<>();
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
                int colon = line.indexOf(':');
                if (colon < 0) {
                    continue;
                }
                String key = line.substring(0, colon).trim();
                if (key.equals("model name") && model.equals("unknown CPU")) {
                    model = line.substring(colon + 1).trim();
                } else if (key.equals("flags") && flags.isEmpty()) {
                    List<String> have = List.of(line.substring(colon + 1).trim().split("\\s+"));
                    FLAGS.stream().filter(have::contains).forEach(flags::add);
                }
            }
        } catch (IOException e) {
            model = "unknown CPU (no /proc/cpuinfo)";
        }
        return String.format(Locale.ROOT, "%s, %d cores (flags: %s), %d kernel threads, Java %s, %s", model,
            Runtime.getRuntime().availableProcessors(), flags.isEmpty() ? "none of " + String.join(" ", FLAGS) : String.join(" ", flags),
            threads, Runtime.version(), LocalDate.now());
    }
}
