package dev.loragateway.adapters;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.loragateway.kernels.cpu.LoraSlotPool;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/** Host and device tiers: capacities in bytes, pinning, eviction of unpinned adapters only, waiting, failures. */
class TiersTest {
    static final ModelShape SHAPE = new ModelShape(2, 24, 40, 24, 8);

    static LoraAdapter adapter(String name, int rank, long seed) {
        Random rnd = new Random(seed);
        LoraAdapter.Part[][] parts = new LoraAdapter.Part[SHAPE.layers()][LoraModule.COUNT];
        for (int l = 0; l < SHAPE.layers(); l++) {
            for (LoraModule m : List.of(LoraModule.Q_PROJ, LoraModule.DOWN_PROJ)) {
                float[] a = new float[rank * SHAPE.in(m)];
                float[] b = new float[SHAPE.out(m) * rank];
                for (int i = 0; i < a.length; i++) {
                    a[i] = (float) rnd.nextGaussian();
                }
                for (int i = 0; i < b.length; i++) {
                    b[i] = (float) rnd.nextGaussian();
                }
                parts[l][m.ordinal()] = new LoraAdapter.Part(rank, 2f, a, b);
            }
        }
        return new LoraAdapter(name, rank, 2.0 * rank, List.of(LoraModule.Q_PROJ, LoraModule.DOWN_PROJ), 0, parts);
    }

    /** Bytes one rank-r adapter of {@link #adapter} takes in a slot. */
    static long slotBytes(int rank) {
        return 4L * SHAPE.layers() * rank * (SHAPE.in(LoraModule.Q_PROJ) + SHAPE.out(LoraModule.Q_PROJ)
            + SHAPE.in(LoraModule.DOWN_PROJ) + SHAPE.out(LoraModule.DOWN_PROJ));
    }

    static final class Disk {
        final Map<String, LoraAdapter> adapters = new HashMap<>();
        final AtomicInteger reads = new AtomicInteger();

        LoraAdapter read(String key) {
            reads.incrementAndGet();
            LoraAdapter a = adapters.get(key);
            if (a == null) {
                throw new IllegalArgumentException("no adapter " + key + " on disk");
            }
            return a;
        }

        /** A device tier of {@code slots} slots and {@code budget} bytes over this disk, loading synchronously. */
        DeviceTier<String> device(int slots, long budget) {
            return new DeviceTier<>(pool(slots), budget, new HostTier<>(1 << 20, this::read), Runnable::run);
        }
    }

    static LoraSlotPool pool(int slots) {
        return new LoraSlotPool(slots, SHAPE.layers(), SHAPE.ins(), SHAPE.outs());
    }

    @Test
    void hostTierWeighsBytesAndEvicts() {
        Disk disk = new Disk();
        for (int i = 0; i < 5; i++) {
            disk.adapters.put("a" + i, adapter("a" + i, 4, i));
        }
        long one = disk.adapters.get("a0").floatBytes();
        HostTier<String> host = new HostTier<>(2 * one + one / 2, disk::read); // room for two
        host.get("a0");
        host.get("a0");
        assertEquals(1, host.stats().hits());
        assertEquals(1, host.stats().misses());
        for (int i = 1; i < 5; i++) {
            host.get("a" + i);
        }
        assertTrue(host.bytes() <= 2 * one + one / 2, "host tier holds " + host.bytes() + " bytes over its capacity");
        assertTrue(host.stats().evictions() >= 3, host.stats().toString());
    }

    @Test
    void pinnedAdaptersAreNeverEvictedAndRequestsWaitForASlot() {
        Disk disk = new Disk();
        for (int i = 0; i < 4; i++) {
            disk.adapters.put("a" + i, adapter("a" + i, 4, i));
        }
        DeviceTier<String> dev = disk.device(2, Long.MAX_VALUE);
        assertEquals(DeviceTier.NOT_READY, dev.tryPin("a0")); // starts the load (synchronous executor)
        int s0 = dev.tryPin("a0");
        int s1 = pinWhenReady(dev, "a1");
        assertNotEquals(s0, s1);
        // both slots pinned: a2 must wait, not fail, and must not evict a pinned adapter
        assertEquals(DeviceTier.NOT_READY, dev.tryPin("a2"));
        assertEquals(DeviceTier.NOT_READY, dev.tryPin("a2"));
        assertTrue(dev.isResident("a0") && dev.isResident("a1"));
        dev.unpin("a0");
        // the unpin let a2 in, in a0's slot
        assertFalse(dev.isResident("a0"));
        assertEquals(s0, dev.tryPin("a2"));
        assertEquals(1, dev.stats().evictions());
        dev.unpin("a1");
        dev.unpin("a2");
        assertEquals(0, dev.totalPins());
        assertThrows(IllegalStateException.class, () -> dev.unpin("a2"));
    }

    @Test
    void byteBudgetLimitsResidentAdaptersAndEvictsLeastRecentlyUsed() {
        Disk disk = new Disk();
        for (int i = 0; i < 3; i++) {
            disk.adapters.put("a" + i, adapter("a" + i, 8, i));
        }
        long budget = 2 * slotBytes(8);
        DeviceTier<String> dev = disk.device(8, budget);
        pinWhenReady(dev, "a0");
        pinWhenReady(dev, "a1");
        dev.unpin("a0");
        dev.unpin("a1");
        dev.tryPin("a0");     // a0 used more recently than a1
        dev.unpin("a0");
        pinWhenReady(dev, "a2");
        assertTrue(dev.isResident("a0"), "the most recently used adapter was evicted");
        assertFalse(dev.isResident("a1"), "the least recently used adapter stayed");
        assertEquals(budget, dev.usedBytes());
        assertEquals(budget, dev.pool().totalBytes());
    }

    @Test
    void adapterLargerThanTheBudgetFailsWithBothSizes() {
        Disk disk = new Disk();
        disk.adapters.put("big", adapter("big", 16, 1));
        DeviceTier<String> dev = disk.device(4, slotBytes(8));
        dev.tryPin("big");
        AdapterLoadException e = assertThrows(AdapterLoadException.class, () -> dev.tryPin("big"));
        assertTrue(e.getMessage().contains("device budget"), e.getMessage());
        // a missing file fails too, and the failure is reported once, then retried
        AdapterLoadException m = assertThrows(AdapterLoadException.class, () -> {
            dev.tryPin("gone");
            dev.tryPin("gone");
        });
        assertTrue(m.getMessage().contains("no adapter gone on disk"), m.getMessage());
        assertEquals(DeviceTier.NOT_READY, dev.tryPin("gone"));
    }

    @Test
    void invalidatedWhilePinnedIsFreedAtLastUnpinAndReloadedAfresh() {
        Disk disk = new Disk();
        disk.adapters.put("x", adapter("x", 4, 1));
        DeviceTier<String> dev = disk.device(2, Long.MAX_VALUE);
        int slot = pinWhenReady(dev, "x");
        float before = dev.pool().scaling(slot, 0, 0);
        disk.adapters.put("x", adapter("x", 8, 2)); // re-uploaded under the same key
        dev.invalidate("x");
        assertFalse(dev.isResident("x"));
        assertEquals(4, dev.pool().rank(slot, 0, 0), "a pinned adapter's weights changed under a running sequence");
        dev.unpin("x");
        assertEquals(0, dev.usedBytes());
        int again = pinWhenReady(dev, "x");
        assertEquals(8, dev.pool().rank(again, 0, 0));
        assertEquals(before, dev.pool().scaling(again, 0, 0));
        assertEquals(2, disk.reads.get());
    }

    @Test
    void prefetchLoadsAheadAndTheListenerHears() {
        Disk disk = new Disk();
        disk.adapters.put("p", adapter("p", 4, 3));
        DeviceTier<String> dev = disk.device(2, Long.MAX_VALUE);
        AtomicInteger heard = new AtomicInteger();
        dev.listener(heard::incrementAndGet);
        dev.prefetch("p");
        assertTrue(dev.isResident("p"));
        assertEquals(1, heard.get());
        assertTrue(dev.tryPin("p") >= 0);
        assertEquals(1, dev.stats().hits());
        assertEquals(1, dev.stats().misses());
    }

    /**
     * Issue 12, item 1: a fork of a running {@code n = 2} request took its pin with {@code tryPin},
     * which refuses a retired (deleted) adapter without pinning; the fork then unpinned a pin it never
     * had and the engine thread died on "unpin of acme/v which is not pinned". {@code pinAgain}
     * shares the lead's pin, retired or not, and the slot stays until the last unpin.
     */
    @Test
    void forkOfDeletedAdapterSharesItsLeadsPinUntilBothUnpin() {
        Disk disk = new Disk();
        disk.adapters.put("v", adapter("v", 4, 7));
        DeviceTier<String> dev = disk.device(2, Long.MAX_VALUE);
        int lead = pinWhenReady(dev, "v");
        dev.invalidate("v"); // DELETE while the lead runs
        assertEquals(DeviceTier.NOT_READY, dev.tryPin("v"), "a new request never gets the deleted weights");
        assertEquals(lead, dev.pinAgain("v"), "the fork runs on its lead's slot");
        assertEquals(2, dev.pins("v"));
        dev.unpin("v");
        assertTrue(dev.pool().totalBytes() > 0, "the retired slot was freed while the fork still runs on it");
        dev.unpin("v");
        assertEquals(0, dev.totalPins());
        assertEquals(0, dev.usedBytes(), "the retired slot is freed at the last unpin");
        assertThrows(IllegalStateException.class, () -> dev.pinAgain("v"), "nothing to share once unpinned");
        assertThrows(IllegalStateException.class, () -> dev.unpin("v"));
    }

    /**
     * Found by the chaos test (issue 12): an adapter deleted while it waited for a slot (fetched, every
     * slot pinned) stayed in the tier as a retired entry forever, so a re-upload of the name was never
     * loaded and its requests waited for ever. Now the waiting entry goes at once and the next pin
     * loads the name afresh.
     */
    @Test
    void adapterDeletedWhileWaitingForASlotIsLoadedAfreshWhenUploadedAgain() {
        Disk disk = new Disk();
        disk.adapters.put("a0", adapter("a0", 4, 1));
        disk.adapters.put("v", adapter("v", 4, 2));
        DeviceTier<String> dev = disk.device(1, Long.MAX_VALUE);
        pinWhenReady(dev, "a0"); // the only slot, pinned
        assertEquals(DeviceTier.NOT_READY, dev.tryPin("v")); // fetched, waits for a slot
        dev.invalidate("v"); // deleted while waiting
        disk.adapters.put("v", adapter("v", 4, 3)); // uploaded again
        int reads = disk.reads.get();
        assertEquals(DeviceTier.NOT_READY, dev.tryPin("v"), "still no slot");
        assertEquals(reads + 1, disk.reads.get(), "the new upload was not fetched: the retired entry blocks the name");
        dev.unpin("a0");
        assertTrue(dev.tryPin("v") >= 0, "the re-uploaded adapter never became resident");
        dev.unpin("v");
        assertEquals(0, dev.totalPins());
    }

    /** The same for an adapter whose load failed: deleting it forgets the failure. */
    @Test
    void failedAdapterDeletedAndUploadedAgainLoads() {
        Disk disk = new Disk();
        DeviceTier<String> dev = disk.device(2, Long.MAX_VALUE);
        assertEquals(DeviceTier.NOT_READY, dev.tryPin("v")); // not on disk: FAILED
        dev.invalidate("v");
        disk.adapters.put("v", adapter("v", 4, 3));
        assertTrue(pinWhenReady(dev, "v") >= 0);
        dev.unpin("v");
    }

    private static int pinWhenReady(DeviceTier<String> dev, String key) {
        for (int i = 0; i < 3; i++) {
            int s = dev.tryPin(key);
            if (s >= 0) {
                return s;
            }
        }
        throw new AssertionError(key + " never became resident");
    }
}
