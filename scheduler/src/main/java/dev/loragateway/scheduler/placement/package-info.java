/**
 * Placement: which node of the cluster runs a request, from the {@link dev.loragateway.scheduler.NodeState}
 * values the nodes publish. One interface, {@link dev.loragateway.scheduler.placement.Placement},
 * works as llm-d's endpoint picker does: <b>filter</b> (not draining, enough free batch slots and
 * KV blocks for the request's whole life; see {@code Room} for how {@code n > 1} choices share
 * prompt blocks) → <b>score</b> (the policy's order) → <b>pick</b> (the best; ties go to the
 * smallest node id, so the same states give the same node whatever their order). No node with room
 * → empty, and the caller queues the request.
 *
 * <p>Policies ({@code --placement}, {@link dev.loragateway.scheduler.placement.Placements#byName}):
 * <ul>
 *   <li>{@code consolidate} (default): Punica's rule, the busiest node (running + queued) that still
 *       has room, the adapter resident (then warm) breaking ties, so load packs onto as few nodes
 *       as it needs and the others stay idle, releasable
 *       ({@link dev.loragateway.scheduler.placement.Consolidation#idleNodes}).</li>
 *   <li>{@code least-loaded}: the emptiest node, then the most free KV blocks: spreads load for
 *       latency, keeps every node busy.</li>
 *   <li>{@code round-robin}: takes turns in node-id order over the nodes with room; the turn
 *       survives nodes joining and leaving.</li>
 *   <li>{@code adapter-affinity}: the node where the adapter is resident, then warm, then the
 *       node rendezvous hashing assigns it, so an adapter keeps landing on the same node and a
 *       joining or leaving node moves only its own share; base-model requests go least-loaded.</li>
 * </ul>
 */
package dev.loragateway.scheduler.placement;
