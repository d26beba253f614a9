package dev.loragateway.loadtests;

import dev.loragateway.scheduler.sim.ClusterSim;
import dev.loragateway.scheduler.sim.Profile;
import dev.loragateway.scheduler.sim.SimResult;
import dev.loragateway.scheduler.workload.Workload;
import java.util.Locale;

/**
 * The capacity page's "nodes needed for a target rate": two answers side by side. The measured one
 * scales the searched node linearly (target ÷ the sustainable rate Gatling found, rounded up); the
 * simulated one runs the cluster simulator ({@link ClusterSim}, the scheduler's own placement) on
 * the same workload at the target rate with a step-time profile, bisecting the fewest nodes whose
 * p99 TTFT and TPOT meet the same SLOs. They differ where placement, batching across nodes or
 * adapter paging matter, and where the profile's node is not the node Gatling measured.
 *
 * @param targetRate   requests/s to plan for
 * @param measuredNodes ceil(target / sustainable), or −1 when the search found no sustainable rate
 * @param simulated    the simulator's run at the fewest nodes (null: it could not meet the SLO with {@code maxNodes})
 * @param fewestNodes  the fewest nodes meeting the SLO in the simulator, −1 if none up to {@code maxNodes}
 * @param maxNodes     the most nodes tried
 * @param requests     requests simulated
 */
public record NodesForTarget(double targetRate, String policy, String profile, String profileSource, int measuredNodes,
                             SimResult simulated, int fewestNodes, int maxNodes, int requests) {

    /**
     * Computes both answers for {@code search}'s workload and SLO at {@code targetRate}.
     *
     * @param profile step-time profile ({@code bench profile} of the node's machine, or {@code punica-a100-7b})
     */
    public static NodesForTarget compute(CapacitySearch.Result search, double targetRate, Profile profile, String policy, int maxNodes) {
        Workload w = search.spec().workload().withRate(targetRate);
        int requests = (int) Math.max(2000, Math.min(1_000_000, Math.round(targetRate * 120)));
        double seconds = requests / targetRate;
        double ttft = search.slo().ttftP99Seconds();
        double tpot = search.slo().tpotP99Seconds();
        SimResult[] best = new SimResult[1];
        int fewest = ClusterSim.fewestNodes(maxNodes, n -> {
            SimResult r = new ClusterSim(new ClusterSim.Options(n, policy, profile, true, ttft, tpot)).run(w.trace(), requests, seconds);
            if (r.sloMet() && (best[0] == null || n < best[0].nodes())) best[0] = r;
            return r.sloMet();
        });
        double sustainable = search.sustainableRate();
        int measured = sustainable > 0 ? (int) Math.ceil(targetRate / sustainable - 1e-9) : -1;
        return new NodesForTarget(targetRate, policy, profile.name(), profile.source(), measured, fewest < 0 ? null : best[0],
            fewest, maxNodes, requests);
    }

    /** The section's body in Markdown. */
    public String markdown() {
        StringBuilder md = new StringBuilder();
        md.append(String.format(Locale.ROOT, "Target: **%.2f requests/s** with the same workload and SLO.%n%n", targetRate));
        md.append("| method | nodes | p99 TTFT s | p99 TPOT s | nodes busy mean / peak | adapter loads/s (host / disk) |\n|---|---|---|---|---|---|\n");
        md.append(String.format(Locale.ROOT, "| measured node, scaled linearly (target ÷ sustainable rate) | %s | - | - | - | - |%n",
            measuredNodes < 0 ? "unknown (no rate met the SLO)" : Integer.toString(measuredNodes)));
        if (simulated == null) {
            md.append(String.format(Locale.ROOT, "| simulator, %s, profile %s | more than %d (not met with %d) | - | - | - | - |%n",
                policy, profile, maxNodes, maxNodes));
        } else {
            md.append(String.format(Locale.ROOT, "| simulator, %s, profile %s | **%d** | %.3f | %.4f | %.1f / %d | %.2f / %.2f |%n",
                policy, profile, fewestNodes, simulated.ttftP99(), simulated.tpotP99(), simulated.busyMean(), simulated.busyPeak(),
                simulated.hostLoadsPerSecond(), simulated.diskLoadsPerSecond()));
        }
        md.append(String.format(Locale.ROOT, "%nSimulator: %d requests of the workload at the target rate, the fewest nodes (bisected, 1 to %d) "
            + "whose p99 TTFT and TPOT meet the SLO; profile source: %s. Its times leave out HTTP and the forwarding hop, "
            + "which the measured row includes.%n", requests, maxNodes, profileSource));
        return md.toString();
    }

    /** The same as an HTML fragment. */
    public String html() {
        StringBuilder h = new StringBuilder();
        h.append(String.format(Locale.ROOT, "<p>Target: <b>%.2f requests/s</b> with the same workload and SLO.</p>%n", targetRate));
        h.append("<table><tr><th>method</th><th>nodes</th><th>p99 TTFT s</th><th>p99 TPOT s</th><th>nodes busy mean / peak</th><th>adapter loads/s (host / disk)</th></tr>\n");
        h.append(String.format(Locale.ROOT, "<tr><td>measured node, scaled linearly (target ÷ sustainable rate)</td><td>%s</td><td>-</td><td>-</td><td>-</td><td>-</td></tr>%n",
            measuredNodes < 0 ? "unknown (no rate met the SLO)" : Integer.toString(measuredNodes)));
        if (simulated == null) {
            h.append(String.format(Locale.ROOT, "<tr><td>simulator, %s, profile %s</td><td>more than %d</td><td>-</td><td>-</td><td>-</td><td>-</td></tr>%n",
                esc(policy), esc(profile), maxNodes));
        } else {
            h.append(String.format(Locale.ROOT, "<tr><td>simulator, %s, profile %s</td><td><b>%d</b></td><td>%.3f</td><td>%.4f</td><td>%.1f / %d</td><td>%.2f / %.2f</td></tr>%n",
                esc(policy), esc(profile), fewestNodes, simulated.ttftP99(), simulated.tpotP99(), simulated.busyMean(), simulated.busyPeak(),
                simulated.hostLoadsPerSecond(), simulated.diskLoadsPerSecond()));
        }
        h.append("</table>\n").append(String.format(Locale.ROOT, "<p>Simulator: %d requests of the workload at the target rate, the fewest nodes "
            + "(bisected, 1 to %d) whose p99 TTFT and TPOT meet the SLO; profile source: %s. Its times leave out HTTP and the forwarding hop, "
            + "which the measured row includes.</p>%n", requests, maxNodes, esc(profileSource)));
        return h.toString();
    }

    private static String esc(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;");
    }
}
