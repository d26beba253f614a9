package dev.loragateway.loadtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class MetricsSnapshotTest {
    private static String text(int tenantA0, int tenantA1, int tenantB1, int loads) {
        return """
            # TYPE lora_gateway_engine_time_to_first_token_seconds histogram
            lora_gateway_engine_time_to_first_token_seconds_bucket{tenant="a",le="0.1"} %d
            lora_gateway_engine_time_to_first_token_seconds_bucket{tenant="a",le="1.0"} %d
            lora_gateway_engine_time_to_first_token_seconds_bucket{tenant="a",le="+Inf"} %d
            lora_gateway_engine_time_to_first_token_seconds_count{tenant="a"} %d
            lora_gateway_engine_time_to_first_token_seconds_bucket{tenant="b",le="0.1"} 0
            lora_gateway_engine_time_to_first_token_seconds_bucket{tenant="b",le="1.0"} %d
            lora_gateway_engine_time_to_first_token_seconds_bucket{tenant="b",le="+Inf"} %d
            lora_gateway_engine_time_to_first_token_seconds_count{tenant="b"} %d
            lora_gateway_adapter_cache_loads_total{tier="device"} %d.0
            lora_gateway_adapter_cache_loads_total{tier="host"} 1.0
            lora_gateway_engine_batch_size_sum 30.0
            lora_gateway_engine_batch_size_count 10
            """.formatted(tenantA0, tenantA1, tenantA1, tenantA1, tenantB1, tenantB1, tenantB1, loads);
    }

    @Test
    void sumsTenantsAndSubtractsTheEarlierSnapshot() {
        MetricsSnapshot before = MetricsSnapshot.parse(text(5, 5, 0, 2));
        // 90 new observations at or under 0.1 s, 10 between 0.1 and 1 s (5 of tenant a, 5 of b)
        MetricsSnapshot after = MetricsSnapshot.parse(text(95, 100, 5, 9));
        MetricsSnapshot d = after.minus(before);
        assertEquals(100, d.count(MetricsSnapshot.TTFT));
        assertEquals(7, d.value(MetricsSnapshot.LOADS + "|tier=device"));
        assertEquals(0, d.value(MetricsSnapshot.LOADS + "|tier=host"));
        assertEquals(0.1 * 50 / 90, d.quantile(MetricsSnapshot.TTFT, 0.5), 1e-12, "median inside the first bucket");
        assertEquals(0.1 + 0.9 * 9 / 10, d.quantile(MetricsSnapshot.TTFT, 0.99), 1e-12, "p99: 9 of the 10 in (0.1, 1]");
        assertTrue(Double.isNaN(d.mean(MetricsSnapshot.BATCH)), "no steps in between");
        assertEquals(3.0, after.mean(MetricsSnapshot.BATCH));
    }

    @Test
    void aQuantileInTheInfiniteBucketIsTheLastFiniteBound() {
        MetricsSnapshot m = MetricsSnapshot.parse("h_bucket{le=\"1.0\"} 1\nh_bucket{le=\"2.0\"} 1\nh_bucket{le=\"+Inf\"} 10\nh_count 10\n");
        assertEquals(2.0, m.quantile("h", 0.99));
        assertTrue(Double.isNaN(m.quantile("missing", 0.99)));
    }
}
