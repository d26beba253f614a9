package dev.loragateway.loadtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.scheduler.sim.ClusterSim;
import dev.loragateway.scheduler.sim.Profile;
import dev.loragateway.scheduler.workload.Workload;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The capacity page's nodes section: the measured node scaled, and the simulator's fewest nodes meeting the SLO. */
class NodesForTargetTest {
    @TempDir
    Path tmp;

    @Test
    void scalesTheMeasuredNodeAndBisectsTheSimulatedCluster() throws Exception {
        LoadSpec spec = LoadSpec.of(Map.of("output-len", "uniform:32:128", "tenants", "8", "adapters-per-tenant", "4"));
        Slo slo = new Slo(0.3, 0.05, 0.01);
        CapacitySearch.Result search = CapacitySearch.search(spec, slo, new CapacitySearch.Settings(2, 40, 5, 10, 0.1, 0),
            rate -> new StepResult(rate, 100, 0, rate, rate * 20, 0.1, rate <= 30 ? 0.2 : 2.0, 0.01, 1, 0.2, 0.01, 4, 0, 0, null));
        assertEquals(30, search.sustainableRate(), 3);
        Profile punica = Profile.load(Profile.PUNICA);
        double target = 60;
        NodesForTarget n = NodesForTarget.compute(search, target, punica, "consolidate", 64);
        assertEquals((int) Math.ceil(target / search.sustainableRate()), n.measuredNodes());
        assertTrue(n.fewestNodes() >= 1 && n.fewestNodes() < 64, "fewest " + n.fewestNodes());
        assertNotNull(n.simulated());
        assertTrue(n.simulated().sloMet() && n.simulated().ttftP99() <= 0.3 && n.simulated().tpotP99() <= 0.05, n.simulated().toString());
        if (n.fewestNodes() > 1) {
            // one node fewer misses: the bisection's answer is the edge
            Workload w = spec.workload().withRate(target);
            assertFalse(new ClusterSim(new ClusterSim.Options(n.fewestNodes() - 1, "consolidate", punica, true, 0.3, 0.05))
                .run(w.trace(), n.requests(), n.requests() / target).sloMet());
        }
        Path page = CapacityReport.write(search, n, tmp);
        String md = Files.readString(tmp.resolve("capacity.md"));
        assertTrue(md.contains(CapacityReport.NODES_HOOK) && md.contains("| **" + n.fewestNodes() + "** |")
            && md.contains("profile punica-a100-7b"), md);
        assertTrue(Files.readString(page).contains("<b>" + n.fewestNodes() + "</b>"));
    }

    @Test
    void fewestNodesIsMinusOneWhenEvenTheMostMiss() {
        assertEquals(-1, ClusterSim.fewestNodes(8, n -> false));
        assertEquals(5, ClusterSim.fewestNodes(8, n -> n >= 5));
        assertEquals(1, ClusterSim.fewestNodes(8, n -> true));
    }
}
