package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.kernels.cpu.CpuBackend;
import io.opentelemetry.sdk.metrics.SdkMeterProvider;
import io.opentelemetry.sdk.metrics.data.HistogramPointData;
import io.opentelemetry.sdk.metrics.data.LongPointData;
import io.opentelemetry.sdk.metrics.data.MetricData;
import io.opentelemetry.sdk.testing.exporter.InMemoryMetricReader;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** The engine's OpenTelemetry instruments, read back through the SDK, agree with what it did. */
class EngineMetricsTest {
    @Test
    void instrumentsCountWhatTheEngineDid() throws Exception {
        EngineFixture fx = new EngineFixture(17);
        InMemoryMetricReader reader = InMemoryMetricReader.create();
        Random rnd = new Random(8);
        int requests = 12;
        AtomicInteger multiToken = new AtomicInteger();
        try (SdkMeterProvider provider = SdkMeterProvider.builder().registerMetricReader(reader).build()) {
            Engine.Options o = Engine.Options.builder().maxBatch(8).maxQueued(100)
                .kvCacheBytes(12 * KvBlockPool.bytesPerBlock(fx.cfg, 4)).blockSize(4).meter(provider.get("test")).build();
            long steps;
            long preemptions;
            try (Engine engine = new Engine(fx.model, new CpuBackend(2), null, o)) {
                List<CompletableFuture<Generator.Finish>> fs = new ArrayList<>();
                for (int i = 0; i < requests; i++) {
                    int max = 1 + rnd.nextInt(20);
                    if (max > 1) {
                        multiToken.incrementAndGet();
                    }
                    fs.add(engine.submit(new Engine.Request(fx.randomPrompt(rnd, 10), SamplingParams.greedy(max), null, "acme", (t, lp) -> true)));
                }
                for (var f : fs) {
                    f.get(60, TimeUnit.SECONDS);
                }
                Collection<MetricData> mid = reader.collectAllMetrics();
                long used = gauge(mid, "kv_blocks", "used");
                long free = gauge(mid, "kv_blocks", "free");
                assertEquals(engine.kvBlocksTotal(), used + free, "used + free KV blocks");
                assertTrue(find(mid, "queue_depth") != null && find(mid, "running") != null);
                steps = engine.steps();
                preemptions = engine.preemptions();
            }
            Collection<MetricData> all = reader.collectAllMetrics();
            assertTrue(preemptions > 0, "12 sequences in 12 blocks of 4 never preempted");
            assertEquals(preemptions, find(all, "preemptions").getLongSumData().getPoints().iterator().next().getValue());
            assertEquals(requests, histogramCount(all, "time_to_first_token"));
            assertEquals(multiToken.get(), histogramCount(all, "time_per_output_token"));
            assertEquals(steps, histogramCount(all, "batch_size"));
            HistogramPointData ttft = find(all, "time_to_first_token").getHistogramData().getPoints().iterator().next();
            assertEquals(EngineMetrics.LATENCY_BUCKETS, ttft.getBoundaries(), "explicit latency buckets");
            assertEquals("acme", ttft.getAttributes().get(EngineMetrics.TENANT));
        }
    }

    private static MetricData find(Collection<MetricData> all, String name) {
        return all.stream().filter(m -> m.getName().equals(EngineMetrics.PREFIX + name)).findFirst().orElse(null);
    }

    private static long histogramCount(Collection<MetricData> all, String name) {
        MetricData m = find(all, name);
        return m == null ? 0 : m.getHistogramData().getPoints().stream().mapToLong(HistogramPointData::getCount).sum();
    }

    private static long gauge(Collection<MetricData> all, String name, String state) {
        for (LongPointData p : find(all, name).getLongGaugeData().getPoints()) {
            if (state.equals(p.getAttributes().get(EngineMetrics.STATE))) {
                return p.getValue();
            }
        }
        throw new AssertionError("no " + state + " point in " + name);
    }
}
