package dev.loragateway.gateway.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import dev.loragateway.kernels.cuda.CudaDevice;
import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** {@code bench gpu} and its flag form {@code bench --gpu}: options checked before anything runs, and the probe's reason without a device. */
class BenchCommandGpuTest {
    final StringWriter out = new StringWriter();
    final StringWriter err = new StringWriter();

    int bench(String... args) {
        String[] all = new String[args.length + 1];
        all[0] = "bench";
        System.arraycopy(args, 0, all, 1, args.length);
        return new CommandLine(new Main()).setOut(new PrintWriter(out)).setErr(new PrintWriter(err)).execute(all);
    }

    @Test
    void withoutADeviceGpuExitsTwoNamingTheProbesReason() {
        CudaDevice.Probe probe = CudaDevice.probe();
        assumeFalse(probe.usable(), "this machine has a usable CUDA device: " + probe.describe());
        for (String gpu : new String[] {"--gpu", "gpu"}) { // the flag form and the subcommand
            err.getBuffer().setLength(0);
            assertEquals(2, bench(gpu, "--gpu-quick"));
            assertEquals("gpu bench: no usable CUDA device: " + probe.reason(), err.toString().strip());
            assertEquals("", out.toString());
        }
    }

    @Test
    void gpuOptionsWithoutGpuAreRefused() {
        assertEquals(2, bench("--gpu-ranks", "8", "--gpu-quick"));
        assertTrue(err.toString().startsWith("--gpu-ranks, --gpu-quick apply only with --gpu")
            || err.toString().startsWith("--gpu-quick, --gpu-ranks apply only with --gpu"), err.toString());
    }

    @Test
    void oneGpuOptionWithoutGpuIsRefusedToo() {
        assertEquals(2, bench("--gpu-only", "sgmv"));
        assertTrue(err.toString().startsWith("--gpu-only applies only with --gpu"), err.toString());
    }

    @Test
    void badGpuValuesAreUsageErrorsNamingBothNumbers() {
        assertEquals(2, bench("--gpu", "--gpu-batch", "32"));
        assertTrue(err.toString().startsWith("distinct adapters 64 must be 1 to the batch, 32"), err.toString());
    }

    @Test
    void gpuRunsAlone() {
        assertEquals(2, bench("--gpu", "--concurrency", "1,4"));
        assertTrue(err.toString().startsWith("--gpu runs the GPU bench alone"), err.toString());
    }

    @Test
    void helpListsTheGpuOptions() {
        assertEquals(0, bench("--help"));
        for (String o : new String[] {"--gpu ", "--gpu-quick", "--gpu-adapters", "--gpu-ranks", "--gpu-models", "--gpu-only"}) {
            assertTrue(out.toString().contains(o), o + " in\n" + out);
        }
    }
}
