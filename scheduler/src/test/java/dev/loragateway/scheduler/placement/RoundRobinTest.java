package dev.loragateway.scheduler.placement;

import static dev.loragateway.scheduler.placement.Nodes.empty;
import static dev.loragateway.scheduler.placement.Nodes.node;
import static dev.loragateway.scheduler.placement.Nodes.req;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.scheduler.NodeState;
import dev.loragateway.scheduler.PlacementRequest;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.junit.jupiter.api.Test;

class RoundRobinTest {

    @Test
    void theStreamConsolidationPacksIsSpreadOverAllThreeNodes() {
        List<NodeState> cluster = Nodes.threeEmpty(8, 100);
        List<PlacementRequest> reqs = Collections.nCopies(6, req("t1/a", 20, 20, 1));
        List<String> picks = Nodes.run(Placements.byName("round-robin"), cluster, reqs);
        assertEquals(List.of("node-a", "node-b", "node-c", "node-a", "node-b", "node-c"), picks);
        assertEquals(3, Consolidation.busyNodes(cluster).size());
        assertTrue(Consolidation.idleNodes(cluster).isEmpty());
    }

    @Test
    void aFullNodeIsSkippedAndTheTurnSurvivesNodesJoiningAndLeaving() {
        Placement rr = Placements.byName("round-robin");
        var r = req(null, 10, 10, 1);
        NodeState a = empty("node-a", 8, 100);
        NodeState b = node("node-b", 8, 0, 8, 100, 100, Set.of(), Set.of(), false); // no batch slot
        NodeState c = empty("node-c", 8, 100);
        NodeState d = empty("node-d", 8, 100);
        assertEquals("node-a", rr.place(r, List.of(a, b, c)).orElseThrow().nodeId());
        assertEquals("node-c", rr.place(r, List.of(a, b, c)).orElseThrow().nodeId());
        assertEquals("node-d", rr.place(r, List.of(d, a, c)).orElseThrow().nodeId(), "joined after node-c");
        assertEquals("node-a", rr.place(r, List.of(a, c)).orElseThrow().nodeId(), "node-d left: wrap around");
        assertTrue(rr.place(r, List.of(b)).isEmpty());
    }

    @Test
    void concurrentCallersEachTakeTheirOwnTurn() throws Exception {
        Placement rr = Placements.byName("round-robin");
        List<NodeState> nodes = List.of(empty("node-a", 8, 100), empty("node-b", 8, 100), empty("node-c", 8, 100));
        var r = req(null, 10, 10, 1);
        int threads = 4;
        int perThread = 3000;
        Map<String, AtomicInteger> counts = new ConcurrentHashMap<>();
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            CountDownLatch start = new CountDownLatch(1);
            List<Future<?>> done = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                done.add(pool.submit(() -> {
                    start.await();
                    for (int i = 0; i < perThread; i++) {
                        String id = rr.place(r, nodes).orElseThrow().nodeId();
                        counts.computeIfAbsent(id, k -> new AtomicInteger()).incrementAndGet();
                    }
                    return null;
                }));
            }
            start.countDown();
            for (Future<?> f : done) {
                f.get(30, TimeUnit.SECONDS);
            }
        } finally {
            pool.shutdownNow();
        }
        // every successful turn follows the one before it: exactly a third each, however the threads interleave
        for (String id : List.of("node-a", "node-b", "node-c")) {
            assertEquals(threads * perThread / 3, counts.get(id).get(), id + " " + counts);
        }
    }
}
