package dev.loragateway.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Random;
import jcuda.Pointer;
import jcuda.driver.CUfunction;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@link CudaContext} on a real device: context, memory pool, pinned round trips, a launch, the
 * project's fatbin. Every test skips itself where the probe finds no device fit to use (so on
 * machines without a GPU, including the build machine); run them on a GPU machine with
 * {@code kernels/gpu-check.sh run}.
 */
class CudaContextGpuTest {
    static final long MB = 1L << 20;

    /**
     * {@code y[i] = a·x[i] + y[i]} for {@code i < n}, {@code x, y: [n] float32}, written as PTX by
     * hand (ISA 7.0, sm_80: any CUDA 11+ driver JIT-compiles it for the device at hand), so the
     * launch path is tested without the project's fatbin. Checked with {@code ptxas -arch=sm_80}
     * and {@code -arch=sm_90}; the same as nvcc's output for the obvious CUDA C.
     */
    static final String SAXPY_PTX = String.join("\n",
        ".version 7.0",
        ".target sm_80",
        ".address_size 64",
        "",
        ".visible .entry saxpy(",
        "\t.param .u64 saxpy_param_x,",
        "\t.param .u64 saxpy_param_y,",
        "\t.param .f32 saxpy_param_a,",
        "\t.param .u32 saxpy_param_n",
        ")",
        "{",
        "\t.reg .pred %p<2>;",
        "\t.reg .b32 %r<6>;",
        "\t.reg .f32 %f<5>;",
        "\t.reg .b64 %rd<8>;",
        "",
        "\tld.param.u64 %rd1, [saxpy_param_x];",
        "\tld.param.u64 %rd2, [saxpy_param_y];",
        "\tld.param.f32 %f1, [saxpy_param_a];",
        "\tld.param.u32 %r1, [saxpy_param_n];",
        "\tmov.u32 %r2, %ctaid.x;",
        "\tmov.u32 %r3, %ntid.x;",
        "\tmov.u32 %r4, %tid.x;",
        "\tmad.lo.s32 %r5, %r2, %r3, %r4;",
        "\tsetp.ge.u32 %p1, %r5, %r1;",
        "\t@%p1 bra DONE;",
        "\tcvta.to.global.u64 %rd3, %rd1;",
        "\tcvta.to.global.u64 %rd4, %rd2;",
        "\tmul.wide.u32 %rd5, %r5, 4;",
        "\tadd.s64 %rd6, %rd3, %rd5;",
        "\tadd.s64 %rd7, %rd4, %rd5;",
        "\tld.global.f32 %f2, [%rd6];",
        "\tld.global.f32 %f3, [%rd7];",
        "\tfma.rn.f32 %f4, %f2, %f1, %f3;",
        "\tst.global.f32 [%rd7], %f4;",
        "DONE:",
        "\tret;",
        "}",
        "");

    static CudaContext ctx; // null without a device

    @BeforeAll
    static void open() {
        CudaDevice.Probe probe = CudaDevice.probe();
        System.out.println("CUDA probe: usable " + probe.usable() + ", " + probe.reason());
        if (probe.deviceReady()) {
            ctx = CudaContext.open(probe, new CudaContext.Options(64 * MB, 512 * MB));
        }
    }

    @BeforeEach
    void needsADevice() {
        assumeTrue(ctx != null, () -> "no CUDA device fit to use: " + CudaDevice.probe().reason());
    }

    @AfterAll
    static void close() {
        if (ctx != null) {
            ctx.close();
        }
    }

    @Test
    void theContextReportsDeviceMemory() {
        long[] info = ctx.memoryInfo();
        assertTrue(info[1] > 0 && info[0] <= info[1], "free " + info[0] + ", total " + info[1]);
        assertTrue(info[1] <= CudaDevice.probe().totalMemory(), "cuMemGetInfo total " + info[1]
            + " > cuDeviceTotalMem " + CudaDevice.probe().totalMemory());
    }

    @Test
    void thePoolAllocatesFromRealChunksAndReusesFreedRanges() {
        DeviceMemoryPool pool = ctx.pool();
        int chunksBefore = pool.chunks();
        DeviceBuffer a = pool.allocate(3 * MB);
        DeviceBuffer b = pool.allocate(1000);
        assertEquals(0, b.offset() % DeviceMemoryPool.ALIGNMENT);
        pool.free(a);
        DeviceBuffer c = pool.allocate(2 * MB);
        assertEquals(a.chunk(), c.chunk());
        assertEquals(a.offset(), c.offset(), "reused the freed range");
        pool.free(b);
        pool.free(c);
        assertTrue(pool.chunks() <= chunksBefore + 1);
        assertThrows(DeviceMemoryExhaustedException.class, () -> pool.allocate(pool.limitBytes() + 1));
    }

    @Test
    void randomFloatsRoundTripThroughTheDevice() {
        int n = 1_000_003; // not a multiple of anything
        float[] data = new float[n];
        Random rnd = new Random(6);
        for (int i = 0; i < n; i++) {
            data[i] = (float) rnd.nextGaussian();
        }
        DeviceBuffer pad = ctx.pool().allocate(777); // the buffer under test starts at a non-zero offset
        DeviceBuffer dev = ctx.pool().allocate(4L * n);
        try (PinnedBuffer up = ctx.pinned(4L * n); PinnedBuffer down = ctx.pinned(4L * n)) {
            up.floats().put(data);
            ctx.copyToDevice(up, 0, dev, 0, 4L * n);
            ctx.copyToHost(dev, 0, down, 0, 4L * n);
            ctx.synchronize();
            float[] back = new float[n];
            down.floats().get(back);
            assertArrayEquals(data, back);

            // a middle part, at offsets on both sides
            ctx.zero(dev, 0, 4L * n);
            ctx.copyToDevice(up, 4L * 1000, dev, 4L * 5000, 4L * 300);
            ctx.copyToHost(dev, 4L * 4999, down, 0, 4L * 302);
            ctx.synchronize();
            FloatBuffer f = down.floats();
            assertEquals(0f, f.get(0));
            for (int i = 0; i < 300; i++) {
                assertEquals(data[1000 + i], f.get(1 + i), "element " + i);
            }
            assertEquals(0f, f.get(301));
        } finally {
            ctx.pool().free(dev);
            ctx.pool().free(pad);
        }
    }

    @Test
    void deviceToDeviceCopiesMoveTheBytesAskedForAndNoMore() {
        int n = 100_003;
        DeviceBuffer src = ctx.pool().allocate(4L * n);
        DeviceBuffer dst = ctx.pool().allocate(4L * n);
        try (PinnedBuffer host = ctx.pinned(4L * n)) {
            FloatBuffer h = host.floats();
            for (int i = 0; i < n; i++) {
                h.put(i, i + 0.5f);
            }
            ctx.copyToDevice(host, 0, src, 0, 4L * n);
            ctx.zero(dst, 0, 4L * n);
            ctx.copyDeviceToDevice(src, 4L * 10, dst, 4L * 20_000, 4L * 777);
            ctx.copyToHost(dst, 0, host, 0, 4L * n);
            ctx.synchronize();
            FloatBuffer out = host.floats();
            assertEquals(0f, out.get(19_999));
            for (int i = 0; i < 777; i++) {
                assertEquals(10 + i + 0.5f, out.get(20_000 + i), "element " + i);
            }
            assertEquals(0f, out.get(20_777));
            assertThrows(IllegalArgumentException.class, () -> ctx.copyDeviceToDevice(src, 4L, dst, 0, 4L * n));
        } finally {
            ctx.pool().free(src);
            ctx.pool().free(dst);
        }
    }

    @Test
    void eventsTimeWorkOnTheStreamAndGraphsReplayIt() {
        long bytes = 64 * MB;
        DeviceBuffer a = ctx.pool().allocate(bytes);
        DeviceBuffer b = ctx.pool().allocate(bytes);
        try (CudaEvent start = ctx.event(); CudaEvent end = ctx.event(); PinnedBuffer host = ctx.pinned(16)) {
            start.record();
            for (int i = 0; i < 10; i++) {
                ctx.copyDeviceToDevice(a, 0, b, 0, bytes);
            }
            end.record();
            float ms = end.elapsedMillisSince(start);
            // 640 MB copied: more than 0.02 ms at any bandwidth below 32 TB/s, less than 10 s at above 64 MB/s
            assertTrue(ms > 0.02f && ms < 10_000f, ms + " ms for 10 copies of 64 MB");

            host.buffer().putInt(0, 42);
            ctx.copyToDevice(host, 0, a, 0, 4);
            ctx.synchronize();
            ctx.zero(b, 0, 8);
            try (CudaGraph g = ctx.capture(() -> ctx.copyDeviceToDevice(a, 0, b, 4, 4))) {
                ctx.copyToHost(b, 0, host, 0, 8);
                ctx.synchronize();
                assertEquals(0, host.buffer().getInt(4), "capturing does not run the work");
                g.launch();
                ctx.copyToHost(b, 0, host, 0, 8);
                ctx.synchronize();
                assertEquals(42, host.buffer().getInt(4), "the replay copied");
                assertEquals(0, host.buffer().getInt(0));
            }
        } finally {
            ctx.pool().free(a);
            ctx.pool().free(b);
        }
    }

    @Test
    void aGraphReplaysLaunchesWithTheArgumentsOfCaptureTime() {
        CUfunction saxpy = ctx.loadModule(SAXPY_PTX.getBytes(StandardCharsets.US_ASCII), "saxpy.ptx").function("saxpy");
        int n = 1000;
        DeviceBuffer dx = ctx.pool().allocate(4L * n);
        DeviceBuffer dy = ctx.pool().allocate(4L * n);
        try (PinnedBuffer host = ctx.pinned(12L * n)) { // x, y's initial value, y read back
            FloatBuffer h = host.floats();
            for (int i = 0; i < n; i++) {
                h.put(i, i);
                h.put(n + i, 1);
            }
            ctx.copyToDevice(host, 0, dx, 0, 4L * n);
            float[] a = {2f};
            Pointer[] args = {Pointer.to(dx.pointer()), Pointer.to(dy.pointer()), Pointer.to(a), Pointer.to(new int[] {n})};
            // y = the pinned buffer's values (read at each replay), then y += a·x with a as captured
            try (CudaGraph g = ctx.capture(() -> {
                ctx.copyToDevice(host, 4L * n, dy, 0, 4L * n);
                ctx.launch(saxpy, (n + 255) / 256, 256, 0, args);
            })) {
                a[0] = 100f;
                for (float init : new float[] {1f, 5f}) {
                    for (int i = 0; i < n; i++) {
                        h.put(n + i, init);
                    }
                    g.launch();
                    ctx.copyToHost(dy, 0, host, 8L * n, 4L * n);
                    ctx.synchronize();
                    for (int i = 0; i < n; i++) {
                        assertEquals(init + 2f * i, host.floats().get(2 * n + i), "y[" + i + "]");
                    }
                }
            }
            RuntimeException e = assertThrows(RuntimeException.class, () -> ctx.capture(ctx::synchronize));
            assertTrue(e.getMessage().contains("CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"), e.getMessage());
            ctx.synchronize(); // the stream left capture mode
        } finally {
            ctx.pool().free(dx);
            ctx.pool().free(dy);
        }
    }

    @Test
    void aHandWrittenPtxKernelRuns() {
        CudaModule m = ctx.loadModule(SAXPY_PTX.getBytes(StandardCharsets.US_ASCII), "saxpy.ptx");
        CUfunction saxpy = m.function("saxpy");
        assertSame(saxpy, m.function("saxpy"), "looked up once");
        int n = 10_007;
        float a = 1.5f;
        float[] x = new float[n];
        float[] y = new float[n];
        Random rnd = new Random(7);
        for (int i = 0; i < n; i++) {
            x[i] = rnd.nextFloat() - 0.5f;
            y[i] = rnd.nextFloat() - 0.5f;
        }
        DeviceBuffer dx = ctx.pool().allocate(4L * n);
        DeviceBuffer dy = ctx.pool().allocate(4L * n);
        try (PinnedBuffer host = ctx.pinned(8L * n)) {
            FloatBuffer h = host.floats();
            h.put(x).put(y);
            ctx.copyToDevice(host, 0, dx, 0, 4L * n);
            ctx.copyToDevice(host, 4L * n, dy, 0, 4L * n);
            ctx.launch(saxpy, (n + 255) / 256, 256, 0,
                Pointer.to(dx.pointer()), Pointer.to(dy.pointer()), Pointer.to(new float[] {a}), Pointer.to(new int[] {n}));
            ctx.copyToHost(dy, 0, host, 0, 4L * n);
            ctx.synchronize();
            FloatBuffer out = host.floats();
            for (int i = 0; i < n; i++) {
                assertEquals(Math.fma(x[i], a, y[i]), out.get(i), "y[" + i + "]");
            }
        } finally {
            ctx.pool().free(dx);
            ctx.pool().free(dy);
        }
        var e = assertThrows(IllegalArgumentException.class, () -> m.function("no_such_kernel"));
        assertTrue(e.getMessage().contains("no_such_kernel") && e.getMessage().contains("saxpy.ptx"), e.getMessage());
    }

    @Test
    void theProjectFatbinLoadsOnThisDevice() {
        assumeTrue(CudaDevice.probe().usable(), CudaDevice.probe().reason());
        CudaModule kernels = ctx.kernels();
        assertNotNull(kernels);
        assertSame(kernels, ctx.kernels(), "loaded once");
        assertThrows(IllegalArgumentException.class, () -> kernels.function("no_such_kernel"));
    }

    @Test
    void garbageIsNotAModule() {
        var e = assertThrows(IllegalStateException.class,
            () -> ctx.loadModule("not a module".getBytes(StandardCharsets.US_ASCII), "garbage"));
        assertTrue(e.getMessage().startsWith("cannot load garbage"), e.getMessage());
    }
}
