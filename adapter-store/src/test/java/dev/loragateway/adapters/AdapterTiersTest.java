package dev.loragateway.adapters;

import static dev.loragateway.adapters.PeftFixture.SHAPE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.concurrent.ExecutorService;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The tiers as {@code serve} wires them over a registry: registered adapters load into slots; deleted ones fail with their key. */
class AdapterTiersTest {
    @TempDir
    Path tmp;

    @Test
    void tiersOverARegistryLoadRegisteredAdaptersAndFailDeletedOnes() {
        AdapterRegistry registry = new AdapterRegistry(tmp.resolve("data"), SHAPE, "base-model", 64);
        registry.load();
        Path upload = PeftFixture.adapter(8, 16, "q_proj").write(tmp.resolve("upload"));
        AdapterKey key = registry.register("acme", "bot", PeftFixture.configFile(upload), PeftFixture.weightsFile(upload)).key();
        AdapterTiers tiers = AdapterTiers.of(registry, 2, Long.MAX_VALUE, 1 << 24, Runnable::run);
        DeviceTier<AdapterKey> device = tiers.device();
        assertEquals(2, device.pool().slots());
        assertEquals(DeviceTier.NOT_READY, device.tryPin(key)); // starts the load (synchronous loader)
        int slot = device.tryPin(key);
        assertTrue(slot >= 0, "the registered adapter never became resident");
        assertEquals(8, device.pool().rank(slot, 0, LoraModule.Q_PROJ.ordinal()));
        assertTrue(tiers.host().contains(key), "the host tier does not hold the adapter it read");
        device.unpin(key);

        registry.delete("acme", "bot");
        device.invalidate(key);
        AdapterLoadException e = assertThrows(AdapterLoadException.class, () -> {
            device.tryPin(key);
            device.tryPin(key);
        });
        assertTrue(e.getMessage().contains("adapter acme/bot no longer exists"), e.getMessage());
    }

    @Test
    void theLoaderThreadNeverKeepsTheJvmUp() throws Exception {
        ExecutorService loader = AdapterTiers.loaderThread();
        try {
            Thread t = loader.submit(Thread::currentThread).get();
            assertEquals("adapter-loader", t.getName());
            assertTrue(t.isDaemon());
        } finally {
            loader.shutdown();
        }
    }
}
