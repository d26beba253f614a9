package dev.loragateway.scheduler.placement;

import static dev.loragateway.scheduler.placement.Nodes.BLOCK;
import static dev.loragateway.scheduler.placement.Nodes.empty;
import static dev.loragateway.scheduler.placement.Nodes.node;
import static dev.loragateway.scheduler.placement.Nodes.req;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.scheduler.NodeState;

import java.util.List;
import java.util.Set;

import org.junit.jupiter.api.Test;

class RoomTest {

    @Test
    void oneSequenceTakesTheBlocksOfPromptPlusMaxTokens() {
        NodeState n = empty("a", 8, 100);
        assertEquals(1, Room.kvBlocks(req(null, 1, 0, 1), n));
        assertEquals(1, Room.kvBlocks(req(null, 10, 6, 1), n)); // 16 positions: exactly one block
        assertEquals(2, Room.kvBlocks(req(null, 10, 7, 1), n));
        assertEquals(4, Room.kvBlocks(req(null, 40, 10, 1), n)); // ceil(50 / 16)
    }

    @Test
    void choicesOfOnePromptShareItsFullBlocksAndEachOwnsThePartialOne() {
        NodeState n = empty("a", 8, 100);
        // p 40, b 16: 2 full prompt blocks shared; each of 4 choices owns ceil(50/16) - 2 = 2 blocks
        assertEquals(2 + 4 * 2, Room.kvBlocks(req(null, 40, 10, 4), n));
        // prompt on a block boundary: all of it shared, each choice owns only its generated blocks
        assertEquals(2 + 3 * 1, Room.kvBlocks(req(null, 2 * BLOCK, 5, 3), n));
        // never less than one sequence alone, never more than no sharing at all
        for (int p = 0; p < 70; p += 7) {
            for (int s = 1; s <= 5; s++) {
                int kv = Room.kvBlocks(req(null, p, 9, s), n);
                assertTrue(kv >= n.blocksFor(p + 9), "p " + p + " s " + s);
                assertTrue(kv <= s * n.blocksFor(p + 9), "p " + p + " s " + s);
            }
        }
    }

    @Test
    void aNodeFitsOnlyWithBothBatchSlotsAndKvBlocks() {
        var r = req(null, 40, 10, 4); // 10 blocks, 4 slots
        assertTrue(Room.fits(r, node("a", 2, 2, 8, 10, 100, Set.of(), Set.of(), false)));
        assertFalse(Room.fits(r, node("a", 2, 2, 8, 9, 100, Set.of(), Set.of(), false)), "one KV block short");
        assertFalse(Room.fits(r, node("a", 3, 2, 8, 90, 100, Set.of(), Set.of(), false)), "one batch slot short");
        assertFalse(Room.fits(r, node("a", 0, 0, 8, 90, 100, Set.of(), Set.of(), true)), "draining");
    }

    @Test
    void ofTwoValuesForOneNodeTheNewerCounts() {
        NodeState old = new NodeState("a", "x", "cpu", 8, 0, 8, 0, 100, BLOCK, Set.of(), Set.of(), 1, false, 10);
        NodeState now = new NodeState("a", "x", "cpu", 0, 0, 8, 100, 100, BLOCK, Set.of(), Set.of(), 1, false, 20);
        var r = req(null, 10, 10, 1);
        assertEquals(List.of(now), Room.candidates(r, List.of(old, now)));
        assertEquals(List.of(now), Room.candidates(r, List.of(now, old)));
    }

    @Test
    void badRequestsNameTheirValue() {
        var e = assertThrows(IllegalArgumentException.class,
            () -> Room.candidates(req(null, 10, 10, 0), List.of(empty("a", 8, 100))));
        assertTrue(e.getMessage().contains("sequences 0"), e.getMessage());
    }
}
