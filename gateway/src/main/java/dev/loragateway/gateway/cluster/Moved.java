package dev.loragateway.gateway.cluster;

/**
 * A forwarded choice that its executing node gave back unfinished: the node drains or its KV pool
 * ran dry. The front node resumes it on another node from the prompt and the tokens it has
 * received ({@link ClusterExecutor}); {@link #reason()} is the {@code reason} label of
 * {@code lora_gateway_cluster_requests_migrated_total}. A lost node is {@link #NODE_LOST}, told
 * by a broken stream or the member's departure rather than by this exception.
 */
final class Moved extends RuntimeException {
    static final String NODE_LOST = "node_lost";
    static final String DRAIN = "drain";
    static final String KV = "kv";

    private final String reason;

    Moved(String reason, String message) {
        super(message, null, false, false);
        this.reason = reason;
    }

    String reason() {
        return reason;
    }
}
