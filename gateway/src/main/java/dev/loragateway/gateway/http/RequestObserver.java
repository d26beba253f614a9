package dev.loragateway.gateway.http;

/** Told about every HTTP request once its response has ended (metrics, access log). */
public interface RequestObserver {
    RequestObserver NONE = r -> { };

    /**
     * One finished request.
     *
     * @param tenant           null when the caller was not authenticated (or the route needs none)
     * @param route            the matched route's path ({@code /v1/completions}), or {@code unmatched}
     * @param model            the {@code model} the request named, or null
     * @param latencyNanos     from the request's arrival to the end of its response
     * @param node             in a cluster, the node that ran the request (this one, or the one a
     *                         completion was forwarded to); null on a gateway without a cluster
     */
    record Record(String requestId, String tenant, String method, String route, int status, String model,
                  int promptTokens, int completionTokens, long latencyNanos, String node) {
        /** A request of a gateway without a cluster. */
        public Record(String requestId, String tenant, String method, String route, int status, String model,
                      int promptTokens, int completionTokens, long latencyNanos) {
            this(requestId, tenant, method, route, status, model, promptTokens, completionTokens, latencyNanos, null);
        }
    }

    void finished(Record r);
}
