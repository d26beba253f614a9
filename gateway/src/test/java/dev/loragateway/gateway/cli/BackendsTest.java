package dev.loragateway.gateway.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import dev.loragateway.kernels.cuda.CudaDevice;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/** {@code --backend}: the real probe where there is no GPU, and every branch over made-up probes. */
class BackendsTest {
    static final CudaDevice.Probe NO_DRIVER = new CudaDevice.Probe(false,
        "no NVIDIA driver: JCuda's driver-API library needs libcuda.so.1: cannot open shared object file", null, 0, 0, 0, true);
    static final CudaDevice.Probe H100 = new CudaDevice.Probe(true, "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)",
        "NVIDIA H100 80GB HBM3", 9, 0, 85_031_714_816L, true);

    static Supplier<CudaDevice.Probe> never() {
        return () -> {
            throw new AssertionError("cpu must not probe CUDA");
        };
    }

    @Test
    void cpuIsTakenAsAskedWithoutProbing() {
        assertEquals(new Backends.Choice("cpu", "requested"), Backends.choose("cpu", never()));
    }

    @Test
    void onThisMachineAutoIsCpuAndCudaFailsNamingTheReason() {
        CudaDevice.Probe probe = CudaDevice.probe();
        assumeFalse(probe.usable(), "this machine has a usable CUDA device: " + probe.describe());
        Backends.Choice auto = Backends.choose("auto");
        assertEquals("cpu", auto.backend());
        assertEquals("auto: CUDA not usable: " + probe.reason(), auto.why());
        var e = assertThrows(IllegalArgumentException.class, () -> Backends.choose("cuda"));
        assertTrue(e.getMessage().startsWith("--backend cuda: CUDA is not usable here: "), e.getMessage());
        assertTrue(e.getMessage().contains(probe.reason()), e.getMessage());
    }

    @Test
    void withoutADriverAutoIsCpuAndCudaIsRefused() {
        Backends.Choice auto = Backends.choose("auto", () -> NO_DRIVER);
        assertEquals("cpu", auto.backend());
        assertTrue(auto.toString().startsWith("backend cpu (auto: CUDA not usable: no NVIDIA driver"), auto.toString());
        var e = assertThrows(IllegalArgumentException.class, () -> Backends.choose("cuda", () -> NO_DRIVER));
        assertTrue(e.getMessage().contains("libcuda.so.1"), e.getMessage());
    }

    @Test
    void aUsableDeviceIsChosenByAutoAndCuda() {
        assertEquals("cuda", Backends.choose("auto", () -> H100).backend());
        assertEquals("cuda", Backends.choose("cuda", () -> H100).backend());
        assertEquals("cpu", Backends.choose("auto", () -> NO_DRIVER).backend());
    }

    @Test
    void anUnknownBackendIsRefused() {
        var e = assertThrows(IllegalArgumentException.class, () -> Backends.choose("bogus"));
        assertEquals("--backend must be auto, cpu or cuda, got 'bogus'", e.getMessage());
    }
}
