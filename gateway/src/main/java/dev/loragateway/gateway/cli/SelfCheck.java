package dev.loragateway.gateway.cli;

import dev.loragateway.adapters.AdapterInfo;
import dev.loragateway.adapters.AdapterRegistry;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.Generator;
import dev.loragateway.batcher.SamplingParams;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The startup self-check: before {@code serve} prints its listening line, one tiny generation (a
 * two-token prompt, one greedy token with its log-probability) runs through the chosen backend's
 * real step, kernels included, and once more through the first {@code --lora-modules} adapter when
 * there is one (the LoRA kernels). A server that cannot compute never says it is ready: a kernel
 * that does not link on this JDK (issue 12, item 2: {@code NoSuchMethodError} on Java 25), a
 * backend that fails its first step, or a non-finite log-probability ends {@code serve} with
 * {@link #EXIT_CODE} and a message naming the JDK, the backend and the kernels.
 */
final class SelfCheck {
    private static final Logger LOG = LoggerFactory.getLogger(SelfCheck.class);
    /** {@code serve}'s exit code when the self-check fails. */
    static final int EXIT_CODE = 3;
    private static final long TIMEOUT_MINUTES = 10; // one token of a very large model on a slow CPU

    private SelfCheck() {
    }

    /** Runs the check; null when it passed, else the message to print. */
    static String run(Engine engine, AdapterRegistry registry, String backend) {
        long start = System.nanoTime();
        String where = "on " + environment() + ", backend " + backend;
        Optional<AdapterInfo> adapter = registry == null ? Optional.empty()
            : registry.list(Engine.DEFAULT_TENANT).stream().filter(a -> a.key().system()).findFirst();
        try {
            one(engine, null);
            if (adapter.isPresent()) {
                one(engine, adapter.get());
            }
        } catch (Exception | LinkageError | AssertionError e) {
            Throwable t = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
            LOG.error("self-check failed {}", where, t);
            return "self-check failed " + where + ": a one-token generation did not run: " + t;
        }
        LOG.info("self-check passed in {} ms {}{}", TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start), where,
            adapter.map(a -> " (base model and adapter " + a.name() + ")").orElse(" (base model)"));
        return null;
    }

    private static void one(Engine engine, AdapterInfo adapter) throws Exception {
        int vocab = engine.model().config().vocabSize();
        int[] prompt = {1 % vocab, 2 % vocab};
        float[] logprob = {Float.NaN};
        int[] token = {-1};
        CompletableFuture<Generator.Finish> f = engine.submit(new Engine.Request(prompt, new SamplingParams(0, 1, 0, 1, 0),
            adapter == null ? null : adapter.key(), "self-check", (t, lp) -> {
                token[0] = t;
                logprob[0] = lp == null ? Float.NaN : lp.logprob();
                return true;
            }));
        try {
            f.get(TIMEOUT_MINUTES, TimeUnit.MINUTES);
        } catch (TimeoutException e) {
            f.cancel(false);
            throw new TimeoutException("no token after " + TIMEOUT_MINUTES + " minutes");
        }
        String what = adapter == null ? "the base model" : "adapter " + adapter.name();
        if (token[0] < 0 || token[0] >= vocab) {
            throw new IllegalStateException(what + " gave token " + token[0] + " outside the vocabulary (size " + vocab + ")");
        }
        if (!Float.isFinite(logprob[0]) || logprob[0] > 0) {
            throw new IllegalStateException(what + " gave a log-probability of " + logprob[0] + " (the logits are not finite)");
        }
    }

    /** The JDK and the CPU kernels in words, for the log and for a failure's message. */
    static String environment() {
        return "Java " + Runtime.version() + " (" + System.getProperty("java.vendor", "?") + ", " + System.getProperty("java.home", "?")
            + "), CPU kernels: " + cpuKernels() + "; " + dev.loragateway.kernels.cpu.NativeCpu.describe();
    }

    private static String cpuKernels() {
        if (ModuleLayer.boot().findModule("jdk.incubator.vector").isEmpty()) {
            return "no Vector API module";
        }
        try {
            return dev.loragateway.kernels.cpu.CpuKernelForm.describe();
        } catch (RuntimeException | LinkageError e) {
            return "unusable (" + e + ")";
        }
    }
}
