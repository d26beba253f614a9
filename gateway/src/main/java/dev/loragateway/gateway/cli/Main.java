package dev.loragateway.gateway.cli;

import java.io.File;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The command line: {@code serve}, {@code demo-model}, {@code bench}, {@code simulate}.
 *
 * <p>The CPU kernels use the Vector API, an incubator module that {@code java -jar} cannot enable
 * from the jar's manifest. When the module is missing, main starts the same JVM again with
 * {@code --add-modules jdk.incubator.vector} (and, on Java 22+, {@code --enable-native-access=ALL-UNNAMED}
 * for JCuda and the tokenizer's native library, which otherwise warn) and waits for it, passing
 * SIGTERM on (so a drain still works) and returning its exit code. The jar's manifest says
 * {@code Enable-Native-Access: ALL-UNNAMED} too, for a {@code java -jar} that gives the module itself.
 * SIGTERM is passed on from a signal handler, not a shutdown hook, so the child hears it without
 * waiting for this JVM's shutdown sequence (issue 12, item 12).
 */
@Command(name = "lora-gateway", mixinStandardHelpOptions = true, version = "lora-gateway 0.1.0",
    description = "Serves many LoRA adapters on one copy of a base model (OpenAI-compatible HTTP API).",
    subcommands = {ServeCommand.class, DemoModelCommand.class, BenchCommand.class, SimulateCommand.class})
public final class Main implements Runnable {
    static final String VECTOR_MODULE = "jdk.incubator.vector";

    public static void main(String[] args) throws Exception {
        System.setProperty("OPT_OUT_TRACKING", "true"); // DJL telemetry off before any tokenizer use
        if (ModuleLayer.boot().findModule(VECTOR_MODULE).isEmpty() && System.getProperty("lora.relaunched") == null) {
            System.exit(relaunch(args));
        }
        int code = new CommandLine(new Main()).execute(args);
        if (code != 0) {
            System.exit(code);
        }
    }

    @Override
    public void run() {
        new CommandLine(this).usage(System.out);
    }

    private static int relaunch(String[] args) throws Exception {
        String java = ProcessHandle.current().info().command().orElse(
            System.getProperty("java.home") + File.separator + "bin" + File.separator + "java");
        List<String> cmd = new ArrayList<>();
        cmd.add(java);
        cmd.addAll(jvmFlags(Runtime.version().feature()));
        cmd.add("-Dlora.relaunched=true");
        cmd.addAll(ProcessHandle.current().info().arguments().map(a -> jvmOptions(a, args)).orElse(List.of()));
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(Main.class.getName());
        cmd.addAll(List.of(args));
        Process child = new ProcessBuilder(cmd).inheritIO().start();
        Thread forward = new Thread(() -> {
            child.destroy(); // SIGTERM: the child drains and exits on its own
            try {
                // exit with the child's status (0 after a clean drain), not the JVM's 143 for SIGTERM
                Runtime.getRuntime().halt(child.waitFor());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        Runtime.getRuntime().addShutdownHook(forward); // SIGINT, SIGHUP, System.exit: still passed on
        Signals.onTerm(child::destroy); // SIGTERM: straight to the child; this JVM waits for its exit code
        int code = child.waitFor();
        try {
            Runtime.getRuntime().removeShutdownHook(forward);
        } catch (IllegalStateException shuttingDown) {
            // the hook is already running: it waits for the child
        }
        return code;
    }

    /**
     * The options a JVM of this feature version needs to run the gateway: the Vector API module, and
     * from Java 22 (where {@code ALL-UNNAMED} native access exists and its absence is warned about)
     * native access for the unnamed module.
     */
    static List<String> jvmFlags(int javaFeature) {
        List<String> flags = new ArrayList<>();
        flags.add("--add-modules=" + VECTOR_MODULE);
        if (javaFeature >= 22) {
            flags.add("--enable-native-access=ALL-UNNAMED");
        }
        return flags;
    }

    /** The JVM options of this process (everything before the main class / -jar), minus -jar itself. */
    private static List<String> jvmOptions(String[] all, String[] programArgs) {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < all.length; i++) {
            String a = all[i];
            if (a.equals("-jar") || a.equals("-cp") || a.equals("-classpath") || a.equals("--class-path")) {
                break;
            }
            if (!a.startsWith("-")) {
                break;
            }
            out.add(a);
        }
        return out;
    }
}
