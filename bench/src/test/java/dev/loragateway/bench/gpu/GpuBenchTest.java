package dev.loragateway.bench.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import dev.loragateway.kernels.cuda.CudaDevice;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** The bench's answer without a device, through {@link GpuBench#run} and through {@link GpuBenchMain}. */
class GpuBenchTest {
    static final CudaDevice.Probe NO_DRIVER = new CudaDevice.Probe(false,
        "no NVIDIA driver: JCuda's driver-API library needs libcuda.so.1: cannot open shared object file", null, 0, 0, 0, true);

    @Test
    void withoutAUsableDeviceItExitsTwoNamingTheReasonAndPrintsNoTables() {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        int code = GpuBench.run(GpuBenchConfig.quick(), NO_DRIVER, Optional.empty(), new PrintWriter(out), new PrintWriter(err));
        assertEquals(2, code);
        assertEquals("", out.toString());
        assertEquals("gpu bench: no usable CUDA device: " + NO_DRIVER.reason(), err.toString().strip());
    }

    @Test
    void theMainOnThisMachine() {
        CudaDevice.Probe probe = CudaDevice.probe();
        assumeFalse(probe.usable(), "this machine has a usable CUDA device: " + probe.describe());
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new GpuBenchMain()).setOut(new PrintWriter(out)).setErr(new PrintWriter(err));
        assertEquals(2, cl.execute("--gpu-quick"));
        assertTrue(err.toString().contains("no usable CUDA device: " + probe.reason()), err.toString());
        assertEquals("", out.toString());
    }

    @Test
    void aBadOptionIsAUsageErrorBeforeAnyProbe() {
        StringWriter err = new StringWriter();
        CommandLine cl = new CommandLine(new GpuBenchMain()).setErr(new PrintWriter(err));
        assertEquals(2, cl.execute("--gpu-adapters", "65"));
        assertTrue(err.toString().startsWith("distinct adapters 65 must be 1 to the batch, 64"), err.toString());
    }
}
