package dev.loragateway.scheduler.sim;

/**
 * One policy's run: what an operator reads off the table. Times in seconds; NaN where there was
 * nothing to measure (no request finished, or none made two tokens for a time per output token).
 *
 * @param policy           placement policy
 * @param nodes            nodes simulated
 * @param requests         requests in the trace
 * @param completed        requests that finished
 * @param refused          requests no node could ever hold (whole-life KV blocks above a node's pool)
 * @param seconds          simulated time from the first arrival to the last finish
 * @param requestsPerSecond completed / seconds
 * @param tokensPerSecond  output tokens / seconds
 * @param ttftP50          time to first token (arrival at the cluster to the token), p50
 * @param ttftP99          p99
 * @param e2eP50           arrival to last token, p50
 * @param e2eP99           p99
 * @param tpotP99          (last − first token) / (tokens − 1), p99 over requests with ≥ 2 tokens
 * @param busyMean         nodes busy (something running or waiting on it), time-weighted mean
 * @param busyPeak         most nodes busy at once
 * @param sloMet           p99 TTFT and p99 TPOT within the SLOs given (true without SLOs) and every request completed
 * @param nodesNeeded      for the SLO: peak busy nodes when it was met, else −1 (see README)
 * @param hostLoads        adapter loads from the host tier, all nodes
 * @param diskLoads        adapter loads from disk, all nodes
 * @param migrated         sequences moved off a node whose KV pool ran dry (reason kv)
 * @param preemptions      sequences preempted to be recomputed on their node
 * @param steps            engine steps simulated, all nodes
 * @param wallSeconds      how long the simulation itself took
 * @param bucketSeconds    width of each {@code busyOverTime} bucket
 * @param busyOverTime     mean busy nodes per bucket
 */
public record SimResult(String policy, int nodes, int requests, int completed, int refused, double seconds,
                        double requestsPerSecond, double tokensPerSecond, double ttftP50, double ttftP99, double e2eP50,
                        double e2eP99, double tpotP99, double busyMean, int busyPeak, boolean sloMet, int nodesNeeded,
                        long hostLoads, long diskLoads, long migrated, long preemptions, long steps,
                        double wallSeconds, double bucketSeconds, double[] busyOverTime) {

    public double hostLoadsPerSecond() {
        return hostLoads / seconds;
    }

    public double diskLoadsPerSecond() {
        return diskLoads / seconds;
    }
}
