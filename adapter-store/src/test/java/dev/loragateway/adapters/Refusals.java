package dev.loragateway.adapters;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.function.Executable;

/** Assertions on the messages users get back as HTTP 400s. */
final class Refusals {
    private Refusals() {
    }

    /** Asserts an {@link AdapterValidationException} whose message contains every fragment and no path. */
    static String assertRefused(Executable call, String... fragments) {
        AdapterValidationException e = assertThrows(AdapterValidationException.class, call);
        String msg = e.getMessage();
        for (String f : fragments) {
            assertTrue(msg.contains(f), () -> "message lacks '" + f + "': " + msg);
        }
        assertFalse(msg.contains(System.getProperty("java.io.tmpdir")), () -> "message shows a server path: " + msg);
        assertFalse(msg.contains("Exception"), () -> "message reads like a stack trace: " + msg);
        return msg;
    }
}
