package dev.loragateway.scheduler.placement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;

import org.junit.jupiter.api.Test;

class PlacementsTest {

    @Test
    void everyNameGivesItsPolicy() {
        assertEquals(List.of("consolidate", "least-loaded", "round-robin", "adapter-affinity"), Placements.NAMES);
        for (String name : Placements.NAMES) {
            assertEquals(name, Placements.byName(name).name());
        }
        assertEquals("consolidate", Placements.defaultPlacement().name());
        assertNotSame(Placements.byName("round-robin"), Placements.byName("round-robin"));
    }

    @Test
    void anUnknownNameListsTheAllowedOnes() {
        for (String bad : new String[] {"Consolidate", "least_loaded", "", null}) {
            var e = assertThrows(IllegalArgumentException.class, () -> Placements.byName(bad));
            assertTrue(e.getMessage().contains("'" + bad + "'"), e.getMessage());
            assertTrue(e.getMessage().endsWith("consolidate, least-loaded, round-robin, adapter-affinity"),
                e.getMessage());
        }
    }
}
