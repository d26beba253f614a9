package dev.loragateway.loadtests;

import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Runs {@link GatewaySimulation} once, in this JVM, through Gatling's own entry point
 * ({@code io.gatling.app.Gatling.fromArgs}, what {@code gatling:test} calls), and says where the run
 * left its HTML report and its {@code requests.jsonl}.
 *
 * <p>The spec reaches the simulation as {@code lora.load.*} system properties, set for the run and
 * removed after it; runs are therefore one at a time per JVM ({@code synchronized}).
 */
public final class GatlingRun {

    /**
     * One finished run.
     *
     * @param status  Gatling's exit status (0: ran; assertions are not used)
     * @param report  the run's report folder ({@code index.html}, {@code js/stats.json})
     * @param samples the run's {@code requests.jsonl}
     */
    public record Result(int status, Path report, Path samples) {
        public Path index() {
            return report.resolve("index.html");
        }
    }

    private GatlingRun() {
    }

    /**
     * Runs {@code spec} and writes its report under {@code resultsDir} (one new folder per run,
     * named after {@code description}).
     */
    public static Result run(LoadSpec spec, Path resultsDir, String description) {
        return run(spec, resultsDir, description, false);
    }

    /**
     * As {@link #run(LoadSpec, Path, String)}; with {@code quiet}, what Gatling prints (its summary
     * tables, the report's path) goes to {@code DESCRIPTION.console.txt} in {@code resultsDir}
     * instead of stdout, for a caller that prints its own line per run.
     */
    public static synchronized Result run(LoadSpec spec, Path resultsDir, String description, boolean quiet) {
        Map<String, String> props = spec.toProperties();
        PrintStream stdout = System.out;
        try {
            Files.createDirectories(resultsDir);
            Path samples = resultsDir.resolve(description + ".requests.jsonl");
            props.put("lora.samples", samples.toString());
            props.forEach(System::setProperty);
            if (quiet) {
                System.setOut(new PrintStream(Files.newOutputStream(resultsDir.resolve(description + ".console.txt")), true, StandardCharsets.UTF_8));
            }
            int status = io.gatling.app.Gatling$.MODULE$.fromArgs(new String[] {
                "-s", GatewaySimulation.class.getName(), "-rf", resultsDir.toString(), "-rd", description});
            Path report = newestReport(resultsDir, description);
            if (report != null) {
                Path inside = report.resolve("requests.jsonl");
                Files.move(samples, inside);
                samples = inside;
            }
            return new Result(status, report, samples);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } finally {
            if (System.out != stdout) {
                System.out.close();
                System.setOut(stdout);
            }
            props.keySet().forEach(System::clearProperty);
        }
    }

    /** Gatling names a run's folder {@code SIMULATION-TIMESTAMP} in lower case; the newest with an index. */
    private static Path newestReport(Path dir, String description) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> Files.isRegularFile(p.resolve("index.html")) || Files.isDirectory(p.resolve("js")))
                .filter(p -> p.getFileName().toString().startsWith("gatewaysimulation"))
                .max((a, b) -> Long.compare(a.toFile().lastModified(), b.toFile().lastModified()))
                .orElse(null);
        }
    }
}
