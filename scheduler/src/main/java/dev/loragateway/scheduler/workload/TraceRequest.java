package dev.loragateway.scheduler.workload;

/**
 * One request of a trace: when it arrives, whose it is, which adapter it names and how long it is.
 *
 * @param arrivalSeconds seconds from the start of the trace
 * @param tenant         the tenant's id
 * @param adapter        the adapter's name (owned by {@code tenant}), or null for the base model
 * @param promptTokens   prompt length in tokens
 * @param outputTokens   tokens it generates ({@code max_tokens}; end-of-sequence is not modelled)
 * @param popularity     the adapter's popularity class: {@code hot} (the most popular adapters that
 *                       together draw half the traffic), {@code warm} (the next, up to 90 %),
 *                       {@code cold} (the rest), or {@code even} when all are equally likely
 */
public record TraceRequest(double arrivalSeconds, String tenant, String adapter, int promptTokens, int outputTokens,
                           String popularity) {
    public TraceRequest {
        if (!(arrivalSeconds >= 0) || !Double.isFinite(arrivalSeconds))
            throw new IllegalArgumentException("arrival must be a finite time >= 0, got " + arrivalSeconds);
        if (tenant == null || tenant.isEmpty()) throw new IllegalArgumentException("tenant is missing");
        if (promptTokens < 1) throw new IllegalArgumentException("prompt_tokens must be >= 1, got " + promptTokens);
        if (outputTokens < 1) throw new IllegalArgumentException("output_tokens must be >= 1, got " + outputTokens);
        if (popularity == null) popularity = "even";
    }
}
