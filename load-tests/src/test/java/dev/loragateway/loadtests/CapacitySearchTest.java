package dev.loragateway.loadtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The rate logic over a server whose p99 TTFT jumps past the SLO above a known rate. */
class CapacitySearchTest {
    private static final LoadSpec SPEC = LoadSpec.of(Map.of());
    private static final Slo SLO = new Slo(1.0, 0.1, 0.01);

    private static StepResult step(double rate, double knee) {
        double ttft = rate <= knee ? 0.2 : 3.0;
        return new StepResult(rate, 100, 0, rate, rate * 20, 0.1, ttft, 0.01, ttft + 0.5, ttft, 0.01, 4, 0, 0, null);
    }

    @Test
    void doublesThenBisectsToWithinThePrecision() throws Exception {
        List<Double> tried = new ArrayList<>();
        CapacitySearch.Result r = CapacitySearch.search(SPEC, SLO, new CapacitySearch.Settings(2, 1000, 5, 20, 0.1, 0),
            rate -> { tried.add(rate); return step(rate, 100); });
        assertEquals(List.of(2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 96.0), tried.subList(0, 8));
        double best = r.sustainableRate();
        assertTrue(best <= 100 && best > 100 / 1.1 * 0.99, "best " + best + " of " + tried);
        double lowestMiss = r.steps().stream().filter(s -> !SLO.misses(s).isEmpty()).mapToDouble(StepResult::offeredRate).min().orElseThrow();
        assertTrue(lowestMiss <= best * 1.1, "bracket [" + best + ", " + lowestMiss + "]");
    }

    @Test
    void stopsAtMaxStepsAndAtMaxRate() throws Exception {
        CapacitySearch.Result capped = CapacitySearch.search(SPEC, SLO, new CapacitySearch.Settings(2, 10, 5, 20, 0.1, 0), rate -> step(rate, 100));
        assertEquals(List.of(2.0, 4.0, 8.0, 10.0), capped.steps().stream().map(StepResult::offeredRate).toList());
        assertEquals(10, capped.sustainableRate());
        CapacitySearch.Result short3 = CapacitySearch.search(SPEC, SLO, new CapacitySearch.Settings(2, 1000, 5, 3, 0.1, 0), rate -> step(rate, 100));
        assertEquals(3, short3.steps().size());
        assertEquals(8, short3.sustainableRate());
    }

    @Test
    void halvesWhenTheStartRateMissesAndReportsNoneWhenNothingMeets() throws Exception {
        CapacitySearch.Result r = CapacitySearch.search(SPEC, SLO, new CapacitySearch.Settings(16, 1000, 5, 20, 0.1, 0), rate -> step(rate, 5));
        assertEquals(List.of(16.0, 8.0, 4.0), r.steps().subList(0, 3).stream().map(StepResult::offeredRate).toList());
        assertTrue(r.sustainableRate() >= 4 && r.sustainableRate() <= 5, "best " + r.sustainableRate());
        CapacitySearch.Result none = CapacitySearch.search(SPEC, SLO, new CapacitySearch.Settings(16, 1000, 5, 20, 0.1, 0), rate -> step(rate, 0));
        assertNull(none.best());
        assertEquals(0, none.sustainableRate());
        assertTrue(CapacityReport.summary(none).contains("none"), CapacityReport.summary(none));
    }

    @Test
    void theSloNamesWhatAStepMisses() {
        StepResult s = new StepResult(50, 100, 5, 45, 900, 0.5, 1.5, 0.2, 3, 1.4, 0.2, 8, 0, 0, null);
        assertEquals(List.of("errors 5.0 % > 1.0 %", "p99 TTFT 1.500 s > 1.000 s", "p99 TPOT 0.2000 s > 0.1000 s"), SLO.misses(s));
    }
}
