package dev.loragateway.kernels.cuda;

import jcuda.CudaException;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdevice_attribute;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

/**
 * Whether this process can run the CUDA backend, asked once: {@link #probe()}.
 *
 * <p>The probe loads JCuda's driver-API library (which needs only the NVIDIA driver's
 * {@code libcuda.so.1}), calls {@code cuInit}, and looks at device 0 (the first device that
 * {@code CUDA_VISIBLE_DEVICES} leaves visible): its name, compute capability and memory. It is
 * usable when all of these hold:
 * <ol>
 *   <li>the driver library loads: without a driver, JCuda throws {@link UnsatisfiedLinkError} on
 *       first use (about 35-85 ms, after unpacking its {@code .so} into {@code java.io.tmpdir});
 *   <li>{@code cuInit} succeeds and at least one device is visible;
 *   <li>the device is sm_80 (Ampere) or newer: the kernels use bf16 and {@code cp.async};
 *   <li>this build carries the kernels, the classpath resource {@value #FATBIN_RESOURCE} that the
 *       kernels module's nvcc step writes (it is skipped when nvcc is not on the build's PATH).
 * </ol>
 * It creates no context (no device memory, no ~300 ms context start-up): whether the fatbin has
 * code the device can run only shows when {@link CudaContext#kernels()} loads it.
 *
 * <p>JCuda writes {@code libJCudaDriver-12.6.0-linux-x86_64.so} into {@code java.io.tmpdir} when
 * no file of that name is there yet, then loads it from there: a {@code noexec} tmpdir shows up in
 * the reason, and {@code -Djava.io.tmpdir=DIR} moves it (the gpu-check script does).
 *
 * <p>The answer is computed on the first call and cached for the life of the class loader (a
 * holder class: thread-safe, no lock after the first call). A failed native load cannot be retried
 * in the same JVM anyway: the JVM marks {@code JCudaDriver} as unusable after its static
 * initialiser throws. The decision itself ({@link #probe(Driver, boolean)}) takes the driver calls
 * as an interface so tests cover every branch without a GPU.
 */
public final class CudaDevice {
    /** The classpath resource holding the kernels (a fatbin of {@code extern "C"} kernels). */
    public static final String FATBIN_RESOURCE = CudaKernels.FATBIN_RESOURCE.substring(1); // class-loader form, no leading slash
    /** Lowest compute capability the kernels support, as {@code major * 10 + minor}. */
    public static final int MIN_COMPUTE_CAPABILITY = 80;

    private CudaDevice() {
    }

    /**
     * What the probe found. {@code deviceName} is null when no device was reached (then
     * {@code major}, {@code minor} and {@code totalMemory} are 0).
     *
     * @param usable whether the CUDA backend can run here (device ready and kernels present)
     * @param reason why not, or when usable a one-line description of the device
     * @param deviceName device 0's name, e.g. "NVIDIA H100 80GB HBM3"
     * @param major compute capability major, e.g. 9
     * @param minor compute capability minor, e.g. 0
     * @param totalMemory device memory in bytes
     * @param kernels whether this build carries {@value #FATBIN_RESOURCE}
     */
    public record Probe(boolean usable, String reason, String deviceName, int major, int minor, long totalMemory,
                        boolean kernels) {
        /** The device is there and new enough; only the kernels may be missing. */
        public boolean deviceReady() {
            return deviceName != null && major * 10 + minor >= MIN_COMPUTE_CAPABILITY;
        }

        /** {@code sm_90} for compute capability 9.0, null without a device. */
        public String sm() {
            return deviceName == null ? null : "sm_" + major + minor;
        }

        /** "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)", or "no CUDA device". */
        public String describe() {
            if (deviceName == null) {
                return "no CUDA device";
            }
            return deviceName + " (" + sm() + ", " + Math.round(totalMemory / (double) (1L << 30)) + " GiB)";
        }

        static Probe no(String reason) {
            return new Probe(false, reason, null, 0, 0, 0, false);
        }
    }

    /**
     * The probe of this process, computed on the first call (tens of milliseconds without a
     * driver, about as long with one) and the same object on every later call.
     */
    public static Probe probe() {
        return Cached.PROBE;
    }

    /** True when this build's classpath carries {@value #FATBIN_RESOURCE}. */
    public static boolean hasKernels() {
        return CudaDevice.class.getClassLoader().getResource(FATBIN_RESOURCE) != null;
    }

    private static final class Cached {
        static final Probe PROBE = probe(new JCudaDriverCalls(), hasKernels());
    }

    /** The driver calls the probe makes; each returns a {@code CUresult} code. */
    interface Driver {
        int init();

        int deviceCount(int[] count);

        int deviceName(int ordinal, byte[] name);

        int computeCapability(int ordinal, int[] majorMinor);

        int totalMemory(int ordinal, long[] bytes);
    }

    /** The probe's decision over any {@link Driver}: never throws. */
    static Probe probe(Driver driver, boolean kernels) {
        try {
            check(driver.init(), "cuInit");
            int[] count = new int[1];
            check(driver.deviceCount(count), "cuDeviceGetCount");
            if (count[0] < 1) {
                return Probe.no("the NVIDIA driver sees no CUDA device (cuDeviceGetCount = 0)");
            }
            byte[] nameBytes = new byte[256];
            check(driver.deviceName(0, nameBytes), "cuDeviceGetName");
            String name = cString(nameBytes);
            int[] cc = new int[2];
            check(driver.computeCapability(0, cc), "cuDeviceGetAttribute(COMPUTE_CAPABILITY)");
            long[] mem = new long[1];
            check(driver.totalMemory(0, mem), "cuDeviceTotalMem");
            Probe found = new Probe(false, "", name, cc[0], cc[1], mem[0], kernels);
            if (!found.deviceReady()) {
                return withReason(found, false, found.describe()
                    + ": the CUDA backend needs sm_80 or newer");
            }
            if (!kernels) {
                return withReason(found, false, found.describe()
                    + " found, but this build has no CUDA kernels (nvcc was not on the PATH)");
            }
            return withReason(found, true, found.describe());
        } catch (LinkageError e) {
            return Probe.no(linkageReason(e));
        } catch (CudaException e) {
            return Probe.no(e.getMessage());
        } catch (RuntimeException e) {
            return Probe.no("the CUDA probe failed: " + e);
        }
    }

    /** Throws a {@link CudaException} naming the call and the result code unless it is success. */
    static void check(int result, String call) {
        if (result != CUresult.CUDA_SUCCESS) {
            throw new CudaException(call + " failed: " + CUresult.stringFor(result) + hint(result));
        }
    }

    private static String hint(int result) {
        switch (result) {
            case CUresult.CUDA_ERROR_NO_DEVICE:
                return " (no CUDA-capable device is visible; check CUDA_VISIBLE_DEVICES)";
            case CUresult.CUDA_ERROR_STUB_LIBRARY:
                return " (the libcuda.so.1 found is the CUDA toolkit's stub, not the NVIDIA driver's)";
            case CUresult.CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
                return " (libcuda.so.1 does not match the loaded kernel driver's version)";
            case CUresult.CUDA_ERROR_NOT_INITIALIZED:
                return " (cuInit did not succeed)";
            default:
                return "";
        }
    }

    private static Probe withReason(Probe p, boolean usable, String reason) {
        return new Probe(usable, reason, p.deviceName(), p.major(), p.minor(), p.totalMemory(), p.kernels());
    }

    /**
     * One line out of JCuda's many-line load error. The line that matters is the dynamic linker's
     * ("...: libcuda.so.1: cannot open shared object file: No such file or directory").
     */
    static String linkageReason(LinkageError e) {
        String message = String.valueOf(e.getMessage());
        String detail = null;
        for (String line : message.split("\n")) {
            if (line.contains("libcuda")) {
                detail = line.substring(line.indexOf("libcuda")).trim();
                break;
            }
            if (detail == null && line.contains("UnsatisfiedLinkError: /")) {
                detail = line.substring(line.indexOf(": /") + 2).trim(); // e.g. a noexec java.io.tmpdir
            }
        }
        if (detail != null && detail.startsWith("libcuda")) {
            return "no NVIDIA driver: JCuda's driver-API library needs " + detail;
        }
        if (detail != null) {
            return "JCuda's driver-API library did not load from java.io.tmpdir ("
                + System.getProperty("java.io.tmpdir") + "): " + detail;
        }
        String first = message.lines().findFirst().orElse(message);
        return "JCuda's driver-API library did not load (" + e.getClass().getSimpleName() + ": " + first + ")";
    }

    private static String cString(byte[] bytes) {
        int n = 0;
        while (n < bytes.length && bytes[n] != 0) {
            n++;
        }
        return new String(bytes, 0, n, java.nio.charset.StandardCharsets.UTF_8).trim();
    }

    /** The real driver through JCuda: the first call loads the native library (or throws). */
    private static final class JCudaDriverCalls implements Driver {
        @Override
        public int init() {
            return JCudaDriver.cuInit(0);
        }

        @Override
        public int deviceCount(int[] count) {
            return JCudaDriver.cuDeviceGetCount(count);
        }

        @Override
        public int deviceName(int ordinal, byte[] name) {
            CUdevice dev = new CUdevice();
            int r = JCudaDriver.cuDeviceGet(dev, ordinal);
            return r != CUresult.CUDA_SUCCESS ? r : JCudaDriver.cuDeviceGetName(name, name.length, dev);
        }

        @Override
        public int computeCapability(int ordinal, int[] majorMinor) {
            CUdevice dev = new CUdevice();
            int r = JCudaDriver.cuDeviceGet(dev, ordinal);
            int[] v = new int[1];
            if (r == CUresult.CUDA_SUCCESS) {
                r = JCudaDriver.cuDeviceGetAttribute(v, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
                majorMinor[0] = v[0];
            }
            if (r == CUresult.CUDA_SUCCESS) {
                r = JCudaDriver.cuDeviceGetAttribute(v, CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
                majorMinor[1] = v[0];
            }
            return r;
        }

        @Override
        public int totalMemory(int ordinal, long[] bytes) {
            CUdevice dev = new CUdevice();
            int r = JCudaDriver.cuDeviceGet(dev, ordinal);
            return r != CUresult.CUDA_SUCCESS ? r : JCudaDriver.cuDeviceTotalMem(bytes, dev);
        }
    }
}
