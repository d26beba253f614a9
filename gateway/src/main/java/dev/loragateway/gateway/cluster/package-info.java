/**
 * Forwarding a request to another gateway of the cluster: the executing node's internal listener
 * ({@link dev.loragateway.gateway.cluster.InternalApi}), the front node's client of it
 * ({@link dev.loragateway.gateway.cluster.RemoteExecutor}, one per node address, made by
 * {@link dev.loragateway.gateway.cluster.RemoteExecutors}), and the executor that asks placement
 * where each request runs ({@link dev.loragateway.gateway.cluster.ClusterExecutor}).
 *
 * <p>All three sit behind {@link dev.loragateway.batcher.InferenceExecutor}: token ids go to the
 * executing node, token ids and logprobs come back; parsing, authentication, tokenization, the
 * chat template and detokenization stay on the front node, so the HTTP routes cannot tell a
 * forwarded request from a local one.
 *
 * <pre>
 *  front node                                       executing node
 *  RequestPath → ClusterExecutor ─ placement ─ local? ──► LocalExecutor
 *                       └──► RemoteExecutor ══ POST /internal/v1/generate ══► InternalApi → LocalExecutor
 *                             sinks, futures ◄══ NDJSON: {"c":0,"t":17,"lp":…} … {"c":0,"finish":"stop"}
 *                             cancel / stop  ══ POST /internal/v1/cancel ═══► cancels that choice's future
 * </pre>
 */
package dev.loragateway.gateway.cluster;
