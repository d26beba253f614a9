package dev.loragateway.scheduler.placement;

import dev.loragateway.scheduler.NodeState;

import java.util.Objects;

/**
 * A placement's answer: the node chosen, the KV blocks the request was counted at on it, and why
 * (for the access log and for tests), e.g. {@code "consolidate: load 5, adapter resident, 12 of 40 free KV blocks"}.
 *
 * @param node     the chosen node's state as placement saw it
 * @param kvBlocks KV blocks the request takes there over its life (prompt blocks shared by its {@code n} choices counted once)
 * @param policy   the policy's name
 * @param reason   one line: the score that won
 */
public record Decision(NodeState node, int kvBlocks, String policy, String reason) {

    public Decision {
        Objects.requireNonNull(node, "node");
        Objects.requireNonNull(policy, "policy");
        Objects.requireNonNull(reason, "reason");
    }

    /** The chosen node's id. */
    public String nodeId() {
        return node.nodeId();
    }
}
