package dev.loragateway.gateway.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import org.junit.jupiter.api.Test;

/** The JVM options {@link Main} relaunches itself with. */
class MainTest {
    @Test
    void relaunchAddsNativeAccessOnlyFromJavaTwentyTwo() {
        // the warnings about native access, and the flag for the unnamed module, only matter from Java 22
        assertEquals(List.of("--add-modules=jdk.incubator.vector"), Main.jvmFlags(17));
        assertEquals(List.of("--add-modules=jdk.incubator.vector"), Main.jvmFlags(21));
        assertEquals(List.of("--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"), Main.jvmFlags(22));
        assertEquals(List.of("--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"), Main.jvmFlags(25));
    }
}
