package dev.loragateway.gateway.cluster;

import dev.loragateway.gateway.auth.TenantLimiter;
import dev.loragateway.gateway.auth.TenantLimits;
import dev.loragateway.gateway.auth.Tenants;
import dev.loragateway.scheduler.cluster.quota.TenantQuotas;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Future;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The tenants' limits counted for the whole cluster ({@link TenantQuotas}: one Hazelcast entry per
 * tenant, one atomic entry-processor call per check), so that a tenant with
 * {@code max_concurrent_requests: 8} has 8 requests in flight across all nodes, not 8 on each, and
 * {@code max_requests_per_second} is one token bucket wherever its requests enter.
 *
 * <p><b>When the cluster does not answer.</b> Every answer comes within {@code bound} (250 ms by
 * default; a call takes well under 1 ms on a LAN): a call that fails (this node's member stopped)
 * or is late is answered from counts on this node alone ({@link TenantLimits}), with each tenant's
 * limits divided by the number of members last seen, so that the nodes together still stay near the
 * tenant's limit while each counts for itself. A warning is logged when that starts, and a line when
 * the cluster answers again. A slot the cluster grants after its call was given up is given back at
 * once, so a late answer never leaks a slot; a late token is simply spent (the tenant loses at most
 * one request of its rate).
 *
 * <pre>
 *   acme: max_concurrent_requests 8, 3 members
 *   cluster answers in time   → one of acme's 8 cluster-wide slots
 *   no answer within 250 ms   → one of 8 / 3 = 2 slots counted on this node (WARN once)
 * </pre>
 *
 * A slot taken from the cluster is given back to the cluster, one taken locally locally, whatever
 * happened in between.
 */
public final class ClusterTenantLimits implements TenantLimiter, AutoCloseable {
    public static final Duration DEFAULT_BOUND = Duration.ofMillis(250);
    private static final Logger LOG = LoggerFactory.getLogger(ClusterTenantLimits.class);

    private final TenantQuotas quotas;
    private final long boundMillis;
    private final TenantLimits local = new TenantLimits();
    private final AtomicBoolean alone = new AtomicBoolean();
    private final ScheduledThreadPoolExecutor timer;

    public ClusterTenantLimits(TenantQuotas quotas, Duration bound) {
        this.quotas = quotas;
        this.boundMillis = Math.max(1, bound.toMillis());
        this.timer = new ScheduledThreadPoolExecutor(1, r -> {
            Thread t = new Thread(r, "tenant-limits-timer");
            t.setDaemon(true);
            return t;
        });
        timer.setRemoveOnCancelPolicy(true);
    }

    @Override
    public CompletionStage<Optional<Refusal>> request(Tenants.Tenant t) {
        if (t.maxRequestsPerSecond() <= 0) {
            return CompletableFuture.completedFuture(Optional.empty());
        }
        CompletableFuture<Optional<Refusal>> answer = new CompletableFuture<>();
        Supplier<Optional<Refusal>> alone = () -> local.takeRequest(share(t));
        CompletableFuture<Double> call;
        try {
            call = quotas.takeRequest(t.id(), t.maxRequestsPerSecond());
        } catch (RuntimeException e) { // the member has stopped
            return CompletableFuture.completedFuture(aloneBecause(e, alone));
        }
        Future<?> late = afterBound(() -> {
            if (!answer.isDone()) {
                answer.complete(aloneBecause(new TimeoutException("no answer within " + boundMillis + " ms"), alone));
            }
        });
        call.whenComplete((wait, failure) -> {
            late.cancel(false);
            if (failure != null) {
                if (!answer.isDone()) {
                    answer.complete(aloneBecause(failure, alone));
                }
                return;
            }
            together();
            answer.complete(wait > 0 ? Optional.of(TenantLimits.overRate(t, wait)) : Optional.empty());
        });
        return answer;
    }

    @Override
    public CompletionStage<Slot> enter(Tenants.Tenant t) {
        int limit = t.maxConcurrentRequests();
        if (limit <= 0) {
            return CompletableFuture.completedFuture(Slot.free());
        }
        CompletableFuture<Slot> answer = new CompletableFuture<>();
        Supplier<Slot> alone = () -> {
            Tenants.Tenant share = share(t);
            Optional<Refusal> refused = local.tryEnter(share);
            return refused.isPresent() ? Slot.refused(refused.get()) : Slot.held(() -> local.release(share));
        };
        CompletableFuture<Integer> call;
        try {
            call = quotas.enter(t.id(), limit);
        } catch (RuntimeException e) {
            return CompletableFuture.completedFuture(aloneBecause(e, alone));
        }
        Future<?> late = afterBound(() -> {
            if (!answer.isDone()) {
                offer(answer, aloneBecause(new TimeoutException("no answer within " + boundMillis + " ms"), alone));
            }
        });
        call.whenComplete((held, failure) -> {
            late.cancel(false);
            if (failure != null) {
                if (!answer.isDone()) {
                    offer(answer, aloneBecause(failure, alone));
                }
                return;
            }
            together();
            // too late (answered from local counts already): the cluster's slot goes back at once
            offer(answer, held < limit ? Slot.held(() -> leave(t)) : Slot.refused(TenantLimits.atConcurrency(t, held)));
        });
        return answer;
    }

    /** Runs {@code giveUp} after the bound (a future cancelled by the answer); a closed timer never gives up. */
    private Future<?> afterBound(Runnable giveUp) {
        try {
            return timer.schedule(giveUp, boundMillis, TimeUnit.MILLISECONDS);
        } catch (RejectedExecutionException closed) {
            return CompletableFuture.completedFuture(null);
        }
    }

    /** Completes {@code answer} with {@code slot}, or gives the slot back when another answer came first. */
    private static void offer(CompletableFuture<Slot> answer, Slot slot) {
        if (!answer.complete(slot)) {
            slot.release();
        }
    }

    private void leave(Tenants.Tenant t) {
        try {
            quotas.leave(t.id()).whenComplete((v, failure) -> {
                if (failure != null) {
                    LOG.warn("a request slot of tenant {} was not given back to the cluster: {}", t.id(), failure.toString());
                }
            });
        } catch (RuntimeException e) { // the member stopped: the others drop this member's slots when it leaves
            LOG.warn("a request slot of tenant {} was not given back to the cluster: {}", t.id(), e.toString());
        }
    }

    /** {@code t} with its limits divided among the members last seen (at least one request each). */
    private Tenants.Tenant share(Tenants.Tenant t) {
        int n = quotas.members();
        return new Tenants.Tenant(t.id(), t.maxAdapters(), t.maxRequestsPerSecond() / n,
            t.maxConcurrentRequests() <= 0 ? 0 : Math.max(1, t.maxConcurrentRequests() / n));
    }

    private <T> T aloneBecause(Throwable why, Supplier<T> answer) {
        if (alone.compareAndSet(false, true)) {
            LOG.warn("tenant limits: the cluster did not answer ({}); counting on this node alone, each tenant's limits "
                + "divided by the {} members last seen, until it answers again", why.toString(), quotas.members());
        }
        return answer.get();
    }

    private void together() {
        if (alone.compareAndSet(true, false)) {
            LOG.info("tenant limits: the cluster answers again; counting for the whole cluster");
        }
    }

    /** True while answers come from this node's counts (the last call to the cluster failed or was late). */
    public boolean alone() {
        return alone.get();
    }

    @Override
    public void close() {
        timer.shutdownNow();
    }
}
