package dev.loragateway.batcher;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.kernels.cpu.CpuBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AutoClose;
import org.junit.jupiter.api.Test;

/**
 * {@link Engine#onStep}: every step is reported once, counted as the simulator counts it (a
 * prefill's rows as prompt tokens, then one decode row per step), with the adapter and the
 * positions attended.
 */
class StepListenerTest {
    @AutoClose
    static final EngineFixture fx = new EngineFixture(78);

    record Seen(Engine.StepShape shape, long nanos) {
    }

    @Test
    void aPrefillThenDecodesAreReportedStepByStep() throws Exception {
        List<Seen> seen = new ArrayList<>();
        String adapter = fx.adapters.get(0).name();
        Engine engine = new Engine(fx.model, new CpuBackend(1), fx.tier(2), 8, 100);
        engine.onStep((shape, nanos) -> seen.add(new Seen(shape, nanos)));
        List<Integer> out = new ArrayList<>();
        try {
            engine.submit(new Engine.Request(new int[] {5, 6, 7, 8, 9}, SamplingParams.greedy(3), EngineFixture.key(adapter),
                (t, lp) -> out.add(t))).get(30, TimeUnit.SECONDS);
        } finally {
            engine.close(); // joins the engine thread: the last step's report has been made
        }
        assertEquals(out.size(), seen.size(), "one prefill step, then one step per token after the first: " + seen);
        assertEquals(new Engine.StepShape(0, 5, 1, 1 + 2 + 3 + 4 + 5), seen.get(0).shape());
        for (int i = 1; i < seen.size(); i++) {
            assertEquals(new Engine.StepShape(1, 0, 1, 5 + i), seen.get(i).shape(), "decode step " + i + " at position " + (4 + i));
        }
        assertTrue(seen.stream().allMatch(s -> s.nanos() > 0), seen.toString());
    }
}
