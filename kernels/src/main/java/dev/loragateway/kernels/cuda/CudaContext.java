package dev.loragateway.kernels.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import jcuda.Pointer;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
import jcuda.driver.CUfunction;
import jcuda.driver.CUgraph;
import jcuda.driver.CUgraphExec;
import jcuda.driver.CUmodule;
import jcuda.driver.CUresult;
import jcuda.driver.CUstream;
import jcuda.driver.CUstreamCaptureMode;
import jcuda.driver.CUstream_flags;
import jcuda.driver.JCudaDriver;

/**
 * One device as the CUDA backend uses it: a context, one stream, a {@link DeviceMemoryPool}, pinned
 * staging buffers, asynchronous copies, and the kernels of {@value CudaDevice#FATBIN_RESOURCE}.
 *
 * <p>Design notes.
 * <ul>
 *   <li>Context: the device's <em>primary</em> context ({@code cuDevicePrimaryCtxRetain}) rather
 *       than {@code cuCtxCreate}: it is the one the runtime API and libraries would use, and two
 *       {@code CudaContext}s in one JVM (tests) share it instead of paying for a second context.
 *       Every public method first makes it current on the calling thread
 *       ({@code cuCtxSetCurrent}, a thread-local store), so any thread may call in.
 *   <li>Stream: one non-blocking stream; copies and kernels on it run in issue order, and
 *       {@link #synchronize()} waits for all of them. One engine thread issues the steps.
 *   <li>Memory: {@link #pool()} holds every long-lived device buffer; nothing calls
 *       {@code cuMemAlloc} per step. Its limit defaults to 90% of the memory free at
 *       {@link #open}.
 *   <li>Copies: host ↔ device only through {@link PinnedBuffer}s (page-locked, so the copies are
 *       truly asynchronous on the stream). The caller owns the staging buffers, allocates them once
 *       at the largest batch shape, and must not touch one while a copy from or to it is in flight
 *       (i.e. until the next {@link #synchronize()}).
 *   <li>Kernels: the fatbin is read from the classpath and loaded with {@code cuModuleLoadData}
 *       on the first {@link #kernels()} call; its functions are looked up by name on first use.
 *   <li>Timing: {@link #event()} gives {@link CudaEvent}s recorded on the stream, so a bench times
 *       the GPU's own span between two points of the stream, without the host's launch and
 *       synchronisation overhead in the number.
 * </ul>
 *
 * <p>Launch example ({@code saxpy(const float* x, float* y, float a, unsigned n)}):
 * <pre>{@code
 * CUfunction f = ctx.kernels().function("saxpy");
 * ctx.launch(f, (n + 255) / 256, 256, 0,
 *     Pointer.to(x.pointer()), Pointer.to(y.pointer()), Pointer.to(new float[] {a}), Pointer.to(new int[] {n}));
 * }</pre>
 *
 * <p>Untested on a GPU as of this writing (the machine that wrote it has none): the tests in
 * {@code CudaContextGpuTest} skip themselves without a usable device; run them with
 * {@code kernels/gpu-check.sh}.
 */
public final class CudaContext implements AutoCloseable {
    /**
     * @param poolChunkBytes size of a regular chunk of the device memory pool
     * @param poolLimitBytes most bytes the pool may take, or 0 for 90% of the memory free at open
     */
    public record Options(long poolChunkBytes, long poolLimitBytes) {
        public static Options defaults() {
            return new Options(256L << 20, 0);
        }
    }

    private final int ordinal;
    private final CUdevice device;
    private final CUcontext context;
    private final CUstream stream;
    private final DeviceMemoryPool pool;
    private final List<CudaModule> modules = Collections.synchronizedList(new ArrayList<>());
    private final Set<PinnedBuffer> pinned = Collections.synchronizedSet(Collections.newSetFromMap(new IdentityHashMap<>()));
    private final Set<CudaEvent> events = Collections.synchronizedSet(Collections.newSetFromMap(new IdentityHashMap<>()));
    private final Set<CudaGraph> graphs = Collections.synchronizedSet(Collections.newSetFromMap(new IdentityHashMap<>()));
    private final Object kernelsLock = new Object();
    private CudaModule kernels; // guarded by kernelsLock
    private volatile boolean closed;

    private CudaContext(int ordinal, Options options) {
        this.ordinal = ordinal;
        this.device = new CUdevice();
        CudaDevice.check(JCudaDriver.cuInit(0), "cuInit");
        CudaDevice.check(JCudaDriver.cuDeviceGet(device, ordinal), "cuDeviceGet(" + ordinal + ")");
        this.context = new CUcontext();
        CudaDevice.check(JCudaDriver.cuDevicePrimaryCtxRetain(context, device), "cuDevicePrimaryCtxRetain");
        CUstream created = null;
        try {
            CudaDevice.check(JCudaDriver.cuCtxSetCurrent(context), "cuCtxSetCurrent");
            created = new CUstream();
            CudaDevice.check(JCudaDriver.cuStreamCreate(created, CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
            long limit = options.poolLimitBytes();
            if (limit <= 0) {
                long[] free = new long[1];
                long[] total = new long[1];
                CudaDevice.check(JCudaDriver.cuMemGetInfo(free, total), "cuMemGetInfo");
                limit = free[0] / 10 * 9;
            }
            this.pool = new DeviceMemoryPool(new DriverBacking(), Math.min(options.poolChunkBytes(), limit), limit);
            this.stream = created;
        } catch (RuntimeException e) {
            if (created != null) {
                JCudaDriver.cuStreamDestroy(created);
            }
            JCudaDriver.cuDevicePrimaryCtxRelease(device);
            throw e;
        }
    }

    /**
     * Opens the device the probe found. Throws {@link IllegalStateException} with the probe's reason
     * when it found none fit to use; the kernels need not be present (see {@link #kernels()}).
     */
    public static CudaContext open(CudaDevice.Probe probe, Options options) {
        if (!probe.deviceReady()) {
            throw new IllegalStateException("no CUDA device to open: " + probe.reason());
        }
        return new CudaContext(0, options);
    }

    /** Makes this context current on the calling thread. */
    public void makeCurrent() {
        if (closed) {
            throw new IllegalStateException("CUDA context of device " + ordinal + " is closed");
        }
        CudaDevice.check(JCudaDriver.cuCtxSetCurrent(context), "cuCtxSetCurrent");
    }

    public DeviceMemoryPool pool() {
        return pool;
    }

    /** The stream every copy and launch of this context goes to. */
    public CUstream stream() {
        return stream;
    }

    /** {@code {free, total}} device memory in bytes, as the driver reports it now. */
    public long[] memoryInfo() {
        makeCurrent();
        long[] free = new long[1];
        long[] total = new long[1];
        CudaDevice.check(JCudaDriver.cuMemGetInfo(free, total), "cuMemGetInfo");
        return new long[] {free[0], total[0]};
    }

    /**
     * An attribute of this context's device, e.g.
     * {@code CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT} or {@code CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE}.
     */
    public int deviceAttribute(int attribute) {
        makeCurrent();
        int[] v = new int[1];
        CudaDevice.check(JCudaDriver.cuDeviceGetAttribute(v, attribute, device), "cuDeviceGetAttribute(" + attribute + ")");
        return v[0];
    }

    /**
     * The project's kernels, {@value CudaDevice#FATBIN_RESOURCE}, loaded on the first call. Throws
     * {@link IllegalStateException} when this build has none, or naming the driver's error when the
     * fatbin has no code this device can run.
     */
    public CudaModule kernels() {
        synchronized (kernelsLock) {
            if (kernels == null) {
                ClassLoader loader = CudaContext.class.getClassLoader();
                byte[] image;
                try (InputStream in = loader.getResourceAsStream(CudaDevice.FATBIN_RESOURCE)) {
                    if (in == null) {
                        throw new IllegalStateException("this build has no CUDA kernels (nvcc was not on the PATH): "
                            + "no classpath resource " + CudaDevice.FATBIN_RESOURCE);
                    }
                    image = in.readAllBytes();
                } catch (IOException e) {
                    throw new UncheckedIOException("cannot read " + CudaDevice.FATBIN_RESOURCE, e);
                }
                kernels = loadModule(image, CudaDevice.FATBIN_RESOURCE);
            }
            return kernels;
        }
    }

    /**
     * Loads a module image: a fatbin, a cubin, or PTX text (which the driver compiles for this
     * device). A NUL is appended, which PTX text needs and binary images ignore.
     *
     * @param what where the image came from, for error messages
     */
    public CudaModule loadModule(byte[] image, String what) {
        makeCurrent();
        byte[] terminated = Arrays.copyOf(image, image.length + 1);
        CUmodule module = new CUmodule();
        int r = JCudaDriver.cuModuleLoadData(module, terminated);
        if (r != CUresult.CUDA_SUCCESS) {
            throw new IllegalStateException("cannot load " + what + " on device " + ordinal + ": "
                + CUresult.stringFor(r) + moduleHint(r));
        }
        CudaModule loaded = new CudaModule(this, module, what);
        modules.add(loaded);
        return loaded;
    }

    private static String moduleHint(int r) {
        switch (r) {
            case CUresult.CUDA_ERROR_NO_BINARY_FOR_GPU:
                return " (the image has no code for this device's architecture: build it with -gencode for it, or with PTX)";
            case CUresult.CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
                return " (the PTX is newer than this driver can compile: update the driver or build with an older nvcc)";
            case CUresult.CUDA_ERROR_INVALID_IMAGE:
                return " (not a fatbin, cubin or PTX image)";
            default:
                return "";
        }
    }

    /** Page-locked host memory of {@code bytes} (at most 2 GiB), freed by its close or by this context's. */
    public PinnedBuffer pinned(long bytes) {
        if (bytes < 1 || bytes > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("pinned buffer of " + bytes + " bytes: must be 1 to " + Integer.MAX_VALUE);
        }
        makeCurrent();
        Pointer p = new Pointer();
        int r = JCudaDriver.cuMemAllocHost(p, bytes);
        if (r == CUresult.CUDA_ERROR_OUT_OF_MEMORY) {
            throw new DeviceMemoryExhaustedException("cannot pin " + bytes + " bytes of host memory: CUDA_ERROR_OUT_OF_MEMORY");
        }
        CudaDevice.check(r, "cuMemAllocHost(" + bytes + ")");
        PinnedBuffer b = new PinnedBuffer(this, p, bytes);
        pinned.add(b);
        return b;
    }

    void freePinned(PinnedBuffer b) {
        if (pinned.remove(b) && !closed) {
            makeCurrent();
            JCudaDriver.cuMemFreeHost(b.pointer());
        }
    }

    /** Queues a copy of {@code bytes} from {@code src} (host, pinned) to {@code dst} (device) on the stream. */
    public void copyToDevice(PinnedBuffer src, long srcOffset, DeviceBuffer dst, long dstOffset, long bytes) {
        makeCurrent();
        int r = JCudaDriver.cuMemcpyHtoDAsync(dst.at(dstOffset, bytes), src.at(srcOffset, bytes), bytes, stream);
        if (r != CUresult.CUDA_SUCCESS) {
            CudaDevice.check(r, "cuMemcpyHtoDAsync(" + bytes + " bytes)");
        }
    }

    /** Queues a copy of {@code bytes} from {@code src} (device) to {@code dst} (host, pinned) on the stream. */
    public void copyToHost(DeviceBuffer src, long srcOffset, PinnedBuffer dst, long dstOffset, long bytes) {
        makeCurrent();
        int r = JCudaDriver.cuMemcpyDtoHAsync(dst.at(dstOffset, bytes), src.at(srcOffset, bytes), bytes, stream);
        if (r != CUresult.CUDA_SUCCESS) {
            CudaDevice.check(r, "cuMemcpyDtoHAsync(" + bytes + " bytes)");
        }
    }

    /**
     * Queues a copy of {@code bytes} from {@code src} to {@code dst} (both device) on the stream. The
     * ranges must not overlap (as {@code cuMemcpyDtoDAsync} requires).
     */
    public void copyDeviceToDevice(DeviceBuffer src, long srcOffset, DeviceBuffer dst, long dstOffset, long bytes) {
        makeCurrent();
        int r = JCudaDriver.cuMemcpyDtoDAsync(dst.at(dstOffset, bytes), src.at(srcOffset, bytes), bytes, stream);
        if (r != CUresult.CUDA_SUCCESS) {
            CudaDevice.check(r, "cuMemcpyDtoDAsync(" + bytes + " bytes)");
        }
    }

    /** Queues {@code bytes} zero bytes into {@code dst} at {@code offset}. */
    public void zero(DeviceBuffer dst, long offset, long bytes) {
        makeCurrent();
        CudaDevice.check(JCudaDriver.cuMemsetD8Async(dst.at(offset, bytes), (byte) 0, bytes, stream), "cuMemsetD8Async");
    }

    /**
     * Queues a 1-D launch of {@code f}: {@code grid} blocks of {@code block} threads,
     * {@code sharedBytes} of dynamic shared memory; each argument is a pointer to the value, e.g.
     * {@code Pointer.to(buffer.pointer())}, {@code Pointer.to(new int[] {n})}.
     */
    public void launch(CUfunction f, int grid, int block, int sharedBytes, Pointer... args) {
        launch(f, grid, 1, 1, block, 1, 1, sharedBytes, args);
    }

    /** As {@link #launch(CUfunction, int, int, int, Pointer...)} with 3-D grid and block shapes. */
    public void launch(CUfunction f, int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ, int sharedBytes,
                       Pointer... args) {
        makeCurrent();
        int r = JCudaDriver.cuLaunchKernel(f, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedBytes, stream,
            Pointer.to(args), null);
        if (r != CUresult.CUDA_SUCCESS) { // the message is built only on failure: launches are the hot path
            CudaDevice.check(r, "cuLaunchKernel(grid " + gridX + "x" + gridY + "x" + gridZ + ", block "
                + blockX + "x" + blockY + "x" + blockZ + ")");
        }
    }

    /**
     * A new event with timing ({@code cuEventCreate}, default flags), freed by its close or by this
     * context's. Record it on the stream with {@link CudaEvent#record()}.
     */
    public CudaEvent event() {
        makeCurrent();
        CUevent e = new CUevent();
        CudaDevice.check(JCudaDriver.cuEventCreate(e, CUevent_flags.CU_EVENT_DEFAULT), "cuEventCreate");
        CudaEvent event = new CudaEvent(this, e);
        events.add(event);
        return event;
    }

    /**
     * Records what {@code work} queues on the stream into a graph instead of running it
     * ({@code cuStreamBeginCapture} in thread-local mode, {@code cuStreamEndCapture},
     * {@code cuGraphInstantiate}); {@link CudaGraph#launch()} then replays all of it with one host
     * call. {@code work} must only queue copies and launches on this context's stream (no
     * synchronisation, allocation or event waits) from the calling thread.
     */
    public CudaGraph capture(Runnable work) {
        makeCurrent();
        CudaDevice.check(JCudaDriver.cuStreamBeginCapture(stream, CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
            "cuStreamBeginCapture");
        CUgraph graph = new CUgraph();
        try {
            work.run();
        } catch (RuntimeException | Error e) {
            // leave capture mode; a capture still valid hands back a graph, which nobody will launch
            if (JCudaDriver.cuStreamEndCapture(stream, graph) == CUresult.CUDA_SUCCESS) {
                JCudaDriver.cuGraphDestroy(graph);
            }
            throw e;
        }
        CudaDevice.check(JCudaDriver.cuStreamEndCapture(stream, graph), "cuStreamEndCapture");
        CUgraphExec exec = new CUgraphExec();
        int r = JCudaDriver.cuGraphInstantiate(exec, graph, 0);
        JCudaDriver.cuGraphDestroy(graph); // the executable graph keeps what it needs
        CudaDevice.check(r, "cuGraphInstantiate");
        CudaGraph g = new CudaGraph(this, exec);
        graphs.add(g);
        return g;
    }

    void freeGraph(CudaGraph g) {
        if (graphs.remove(g) && !closed) {
            makeCurrent();
            JCudaDriver.cuGraphExecDestroy(g.exec());
        }
    }

    void freeEvent(CudaEvent e) {
        if (events.remove(e) && !closed) {
            makeCurrent();
            JCudaDriver.cuEventDestroy(e.event());
        }
    }

    /** Waits until everything queued on the stream is done; reports a failed kernel's error here. */
    public void synchronize() {
        makeCurrent();
        CudaDevice.check(JCudaDriver.cuStreamSynchronize(stream), "cuStreamSynchronize");
    }

    /** Waits for the stream, then frees the pool, pinned buffers, events, graphs, modules, stream and context. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        makeCurrent();
        JCudaDriver.cuStreamSynchronize(stream);
        closed = true;
        pool.close();
        synchronized (pinned) {
            for (PinnedBuffer b : pinned) {
                JCudaDriver.cuMemFreeHost(b.pointer());
            }
            pinned.clear();
        }
        synchronized (events) {
            for (CudaEvent e : events) {
                JCudaDriver.cuEventDestroy(e.event());
            }
            events.clear();
        }
        synchronized (graphs) {
            for (CudaGraph g : graphs) {
                JCudaDriver.cuGraphExecDestroy(g.exec());
            }
            graphs.clear();
        }
        synchronized (modules) {
            modules.forEach(CudaModule::unload);
            modules.clear();
        }
        JCudaDriver.cuStreamDestroy(stream);
        JCudaDriver.cuDevicePrimaryCtxRelease(device);
    }

    /** The pool's chunks: {@code cuMemAlloc}/{@code cuMemFree} in this context. */
    private final class DriverBacking implements DeviceMemoryPool.Backing {
        @Override
        public CUdeviceptr allocate(long bytes) {
            CudaDevice.check(JCudaDriver.cuCtxSetCurrent(context), "cuCtxSetCurrent");
            CUdeviceptr p = new CUdeviceptr();
            int r = JCudaDriver.cuMemAlloc(p, bytes);
            if (r == CUresult.CUDA_ERROR_OUT_OF_MEMORY) {
                throw new DeviceMemoryExhaustedException("the device has no " + bytes + " bytes free for a new pool chunk "
                    + "(CUDA_ERROR_OUT_OF_MEMORY)");
            }
            CudaDevice.check(r, "cuMemAlloc(" + bytes + ")");
            return p;
        }

        @Override
        public void free(CUdeviceptr chunk) {
            JCudaDriver.cuCtxSetCurrent(context);
            JCudaDriver.cuMemFree(chunk);
        }
    }
}
