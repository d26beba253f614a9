package dev.loragateway.bench.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.kernels.cuda.DeviceMemoryPool;
import org.junit.jupiter.api.Test;

class BandwidthBenchTest {
    @Test
    void aLayersMatricesSitAtAlignedOffsetsWithoutOverlap() {
        for (ModelShape shape : new ModelShape[] {ModelShape.LLAMA_1B, ModelShape.LLAMA_7B, ModelShape.TINY,
            ModelShape.parse("100:333:1:5:5:20:10")}) {
            BandwidthBench.LayerLayout l = BandwidthBench.LayerLayout.of(shape);
            assertEquals(shape.layerBytes(), l.weightBytes());
            long end = 0;
            for (int i = 0; i < l.weights().size(); i++) {
                assertEquals(0, l.offsets()[i] % DeviceMemoryPool.ALIGNMENT, shape.name() + " " + i);
                assertTrue(l.offsets()[i] >= end, "overlap at " + i);
                end = l.offsets()[i] + l.weights().get(i).bytes();
            }
            assertTrue(end <= l.span() && l.span() < l.weightBytes() + 7 * DeviceMemoryPool.ALIGNMENT);
        }
        BandwidthBench.LayerLayout tiny = BandwidthBench.LayerLayout.of(ModelShape.TINY);
        assertEquals(160, tiny.maxIn(), "down_proj reads the intermediate");
        assertEquals(160, tiny.maxOut(), "gate/up write the intermediate");
    }

    @Test
    void enoughLayerCopiesToSweepThreeTimesTheL2() {
        long l2 = 50L << 20; // H100
        assertEquals(2, BandwidthBench.layerCopies(ModelShape.LLAMA_1B.layerBytes(), l2)); // 3 × 52.4 MB / 121.6 MB
        assertEquals(1, BandwidthBench.layerCopies(ModelShape.LLAMA_7B.layerBytes(), l2));
        assertEquals(16, BandwidthBench.layerCopies(ModelShape.TINY.layerBytes(), l2), "capped");
        assertEquals(3, BandwidthBench.layerCopies(100, 100));
    }

    @Test
    void gigabytesPerSecondFromBytesAndMicroseconds() {
        assertEquals(2000.0, BandwidthBench.gbPerSecond(121_634_816.0 * 2, 121.634816), 1e-9);
        assertEquals(1.0, BandwidthBench.gbPerSecond(1000, 1), 1e-12);
    }
}
