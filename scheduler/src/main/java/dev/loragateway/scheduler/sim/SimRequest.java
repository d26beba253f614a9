package dev.loragateway.scheduler.sim;

/**
 * One simulated request (one sequence: the workload has no {@code n} > 1) on its way through the
 * cluster: its lengths, where it is in the engine's terms ({@code len} positions of which
 * {@code computed} have KV) and the times its metrics come from. Mutable, owned by the simulation
 * thread.
 */
final class SimRequest {
    final int id;
    final String tenant;
    /** The adapter's index in the simulation, −1 for the base model. */
    final int adapter;
    final String adapterKey;
    final int prompt;
    final int target;
    final double arrival;

    /** Prompt plus generated tokens: the positions a recompute would prefill. */
    int len;
    int generated;
    int computed;
    /** KV blocks held on its node. */
    int blocks;
    /** Admission order on its node (older sequences progress first; the newest is preempted). */
    long order;
    boolean pinned;
    /** Rows planned for the running step (0 = none). */
    int rows;
    double firstToken = Double.NaN;
    double lastToken;
    int node = -1;

    SimRequest(int id, String tenant, int adapter, String adapterKey, int prompt, int target, double arrival) {
        this.id = id;
        this.tenant = tenant;
        this.adapter = adapter;
        this.adapterKey = adapterKey;
        this.prompt = prompt;
        this.target = target;
        this.arrival = arrival;
        this.len = prompt;
    }

    /** The fair queue's cost: what is left of prompt plus output (as the engine's prompt + max_tokens). */
    long cost() {
        return len + (target - generated);
    }

    int remaining() {
        return target - generated;
    }
}
