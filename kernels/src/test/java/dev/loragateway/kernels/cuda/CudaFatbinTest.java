package dev.loragateway.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The fatbin the build made, when it could: with nvcc on the PATH (and no -Dcuda.skip) the resource
 * must exist and hold SASS for sm_80 and sm_90 and compute_90 PTX, and each SASS image must define
 * every kernel of {@link CudaKernels#NAMES}. Read with a small parser ({@link Fatbin}) so it runs
 * without cuobjdump; with cuobjdump on the PATH its listings are checked too.
 */
class CudaFatbinTest {
    static byte[] fatbin;

    @BeforeAll
    static void load() throws IOException {
        assumeFalse(Boolean.getBoolean("cuda.skip"), "built with -Dcuda.skip");
        assumeTrue(onPath("nvcc").isPresent(), "nvcc is not on the PATH: the build made no fatbin");
        fatbin = CudaKernels.fatbin();
    }

    @Test
    void resourceExistsAndIsNotEmpty() {
        assertNotNull(fatbin, "nvcc is on the PATH but " + CudaKernels.FATBIN_RESOURCE + " is not on the classpath");
        assertTrue(fatbin.length > 1024, "fatbin of " + fatbin.length + " bytes");
    }

    @Test
    void holdsSassForSm80AndSm90AndPtxForCompute90() {
        List<Fatbin.Entry> entries = Fatbin.entries(fatbin);
        Set<String> found = new TreeSet<>();
        for (Fatbin.Entry e : entries) {
            found.add((e.kind() == Fatbin.KIND_PTX ? "ptx" : "sm") + "_" + e.arch());
        }
        assertEquals(Set.of("sm_80", "sm_90", "ptx_90"), found, "fatbin entries: " + entries);
    }

    @Test
    void everySassImageDefinesEveryKernel() {
        Set<String> names = new TreeSet<>(List.of(CudaKernels.NAMES));
        for (Fatbin.Entry e : Fatbin.entries(fatbin)) {
            if (e.kind() == Fatbin.KIND_ELF) {
                Set<String> missing = new TreeSet<>(names);
                missing.removeAll(e.kernels());
                assertTrue(missing.isEmpty(), e + " lacks " + missing);
            } else if (e.kind() == Fatbin.KIND_PTX && !e.compressed()) {
                String ptx = new String(e.payload(), StandardCharsets.US_ASCII);
                for (String n : names) {
                    assertTrue(ptx.contains(".entry " + n + "("), e + " lacks " + n);
                }
            }
        }
    }

    @Test
    void cuobjdumpListsBothArchitectures() throws Exception {
        Optional<Path> tool = onPath("cuobjdump");
        assumeTrue(tool.isPresent(), "cuobjdump is not on the PATH");
        Path file = Files.createTempFile("lora-gateway", ".fatbin");
        try {
            Files.write(file, fatbin);
            String elf = run(tool.get().toString(), "--list-elf", file.toString());
            String ptx = run(tool.get().toString(), "--list-ptx", file.toString());
            assertTrue(elf.contains("sm_80") && elf.contains("sm_90"), elf);
            assertTrue(ptx.contains("sm_90") || ptx.contains("compute_90"), ptx);
        } finally {
            Files.deleteIfExists(file);
        }
    }

    static Optional<Path> onPath(String tool) {
        String path = System.getenv("PATH");
        if (path == null) {
            return Optional.empty();
        }
        for (String dir : path.split(File.pathSeparator)) {
            if (!dir.isEmpty()) {
                Path p = Path.of(dir, tool);
                if (Files.isRegularFile(p) && Files.isExecutable(p)) {
                    return Optional.of(p);
                }
            }
        }
        return Optional.empty();
    }

    private static String run(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "timed out: " + String.join(" ", cmd));
        assertEquals(0, p.exitValue(), String.join(" ", cmd) + ": " + out);
        return out;
    }
}
