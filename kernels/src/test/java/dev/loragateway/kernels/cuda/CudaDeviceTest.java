package dev.loragateway.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import jcuda.CudaException;
import jcuda.driver.CUresult;
import org.junit.jupiter.api.Test;

/**
 * The probe: its decision over a fake driver (every branch, any machine), and the real probe on a
 * machine without the NVIDIA driver.
 */
class CudaDeviceTest {
    /** A driver that answers as configured. */
    static final class FakeDriver implements CudaDevice.Driver {
        int init = CUresult.CUDA_SUCCESS;
        int count = 1;
        String name = "NVIDIA H100 80GB HBM3";
        int major = 9;
        int minor = 0;
        long memory = 85_031_714_816L;
        RuntimeException throwOnInit;
        LinkageError linkOnInit;

        @Override
        public int init() {
            if (linkOnInit != null) {
                throw linkOnInit;
            }
            if (throwOnInit != null) {
                throw throwOnInit;
            }
            return init;
        }

        @Override
        public int deviceCount(int[] out) {
            out[0] = count;
            return CUresult.CUDA_SUCCESS;
        }

        @Override
        public int deviceName(int ordinal, byte[] out) {
            byte[] b = name.getBytes(StandardCharsets.UTF_8);
            System.arraycopy(b, 0, out, 0, b.length);
            return CUresult.CUDA_SUCCESS;
        }

        @Override
        public int computeCapability(int ordinal, int[] out) {
            out[0] = major;
            out[1] = minor;
            return CUresult.CUDA_SUCCESS;
        }

        @Override
        public int totalMemory(int ordinal, long[] out) {
            out[0] = memory;
            return CUresult.CUDA_SUCCESS;
        }
    }

    /** What JCuda 12.6 throws on a machine without the driver (abridged, same shape). */
    static final String JCUDA_LOAD_ERROR = String.join("\n",
        "Error while loading native library \"JCudaDriver-12.6.0-linux-x86_64\"",
        "Operating system name: Linux",
        "---(start of nested stack traces)---",
        "Stack trace from the attempt to load the library as a file:",
        "java.lang.UnsatisfiedLinkError: no JCudaDriver-12.6.0-linux-x86_64 in java.library.path: /usr/lib",
        "\tat java.base/java.lang.ClassLoader.loadLibrary(ClassLoader.java:2434)",
        "Stack trace from the attempt to load the library as a resource:",
        "java.lang.UnsatisfiedLinkError: /tmp/libJCudaDriver-12.6.0-linux-x86_64.so: libcuda.so.1: cannot open shared "
            + "object file: No such file or directory",
        "\tat java.base/jdk.internal.loader.NativeLibraries.load(Native Method)",
        "---(end of nested stack traces)---");

    @Test
    void aNewEnoughDeviceWithKernelsIsUsable() {
        CudaDevice.Probe p = CudaDevice.probe(new FakeDriver(), true);
        assertTrue(p.usable(), p.reason());
        assertTrue(p.deviceReady());
        assertEquals("sm_90", p.sm());
        assertEquals("NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)", p.describe());
        assertEquals(p.describe(), p.reason());
    }

    @Test
    void withoutTheDriverTheReasonNamesLibcuda() {
        FakeDriver d = new FakeDriver();
        d.linkOnInit = new UnsatisfiedLinkError(JCUDA_LOAD_ERROR);
        CudaDevice.Probe p = CudaDevice.probe(d, true);
        assertFalse(p.usable());
        assertNull(p.deviceName());
        assertEquals("no NVIDIA driver: JCuda's driver-API library needs libcuda.so.1: cannot open shared object file: "
            + "No such file or directory", p.reason());
    }

    @Test
    void theSecondUseOfAFailedClassIsStillALinkageError() {
        FakeDriver d = new FakeDriver();
        d.linkOnInit = new NoClassDefFoundError("Could not initialize class jcuda.driver.JCudaDriver");
        CudaDevice.Probe p = CudaDevice.probe(d, true);
        assertFalse(p.usable());
        assertTrue(p.reason().contains("NoClassDefFoundError: Could not initialize class jcuda.driver.JCudaDriver"), p.reason());
    }

    @Test
    void aNoexecTmpdirIsNamedAsSuch() {
        FakeDriver d = new FakeDriver();
        d.linkOnInit = new UnsatisfiedLinkError("Error while loading native library\n"
            + "java.lang.UnsatisfiedLinkError: /tmp/libJCudaDriver-12.6.0-linux-x86_64.so: failed to map segment from shared object");
        CudaDevice.Probe p = CudaDevice.probe(d, true);
        assertTrue(p.reason().startsWith("JCuda's driver-API library did not load from java.io.tmpdir"), p.reason());
        assertTrue(p.reason().endsWith("failed to map segment from shared object"), p.reason());
    }

    @Test
    void cuInitErrorCodesAreNamed() {
        FakeDriver d = new FakeDriver();
        d.init = CUresult.CUDA_ERROR_NO_DEVICE;
        CudaDevice.Probe p = CudaDevice.probe(d, true);
        assertFalse(p.usable());
        assertTrue(p.reason().startsWith("cuInit failed: CUDA_ERROR_NO_DEVICE"), p.reason());
    }

    @Test
    void exceptionsEnabledInJCudaAreCaughtToo() {
        FakeDriver d = new FakeDriver();
        d.throwOnInit = new CudaException("CUDA_ERROR_SYSTEM_DRIVER_MISMATCH");
        CudaDevice.Probe p = CudaDevice.probe(d, true);
        assertFalse(p.usable());
        assertEquals("CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", p.reason());
    }

    @Test
    void noDevices() {
        FakeDriver d = new FakeDriver();
        d.count = 0;
        CudaDevice.Probe p = CudaDevice.probe(d, true);
        assertFalse(p.usable());
        assertTrue(p.reason().contains("no CUDA device"), p.reason());
    }

    @Test
    void olderThanAmpereIsRefused() {
        FakeDriver d = new FakeDriver();
        d.name = "Tesla T4";
        d.major = 7;
        d.minor = 5;
        d.memory = 15L << 30;
        CudaDevice.Probe p = CudaDevice.probe(d, true);
        assertFalse(p.usable());
        assertFalse(p.deviceReady());
        assertEquals("Tesla T4 (sm_75, 15 GiB): the CUDA backend needs sm_80 or newer", p.reason());
        d.major = 8;
        d.minor = 0;
        assertTrue(CudaDevice.probe(d, true).usable(), "sm_80 is enough");
    }

    @Test
    void aBuildWithoutKernelsSaysSo() {
        CudaDevice.Probe p = CudaDevice.probe(new FakeDriver(), false);
        assertFalse(p.usable());
        assertTrue(p.deviceReady(), "the device itself is fine");
        assertTrue(p.reason().endsWith("this build has no CUDA kernels (nvcc was not on the PATH)"), p.reason());
    }

    /** The real probe where the NVIDIA driver is not installed: fast, says why, computed once. */
    @Test
    void withoutTheNvidiaDriverTheRealProbeSaysSoQuicklyAndOnce() {
        assumeFalse(driverInstalled(), "this machine has libcuda.so.1");
        long t0 = System.nanoTime();
        CudaDevice.Probe first = CudaDevice.probe();
        long firstMs = (System.nanoTime() - t0) / 1_000_000;
        long t1 = System.nanoTime();
        CudaDevice.Probe second = CudaDevice.probe();
        long secondMicros = (System.nanoTime() - t1) / 1_000;
        assertFalse(first.usable());
        assertFalse(first.deviceReady());
        assertTrue(first.reason().contains("libcuda") || first.reason().contains("driver"), first.reason());
        assertTrue(firstMs < 5_000, "first probe took " + firstMs + " ms");
        assertSame(first, second, "cached");
        assertTrue(secondMicros < 10_000, "second probe took " + secondMicros + " µs");
    }

    /** libcuda.so.1 in LD_LIBRARY_PATH or a usual library directory. */
    static boolean driverInstalled() {
        List<String> dirs = new ArrayList<>(List.of("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib",
            "/lib/x86_64-linux-gnu", "/usr/local/nvidia/lib64", "/usr/lib/wsl/lib"));
        String ld = System.getenv("LD_LIBRARY_PATH");
        if (ld != null) {
            dirs.addAll(List.of(ld.split(":")));
        }
        return dirs.stream().filter(s -> !s.isEmpty()).anyMatch(s -> Files.exists(Path.of(s, "libcuda.so.1")));
    }
}
