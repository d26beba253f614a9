package dev.loragateway.kernels.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The kernel ABI in three places must agree, with or without nvcc: {@link CudaKernels#NAMES},
 * the kernel headings of {@code src/main/cuda/README.md}, and the {@code LG_KERNEL} definitions in
 * the CUDA sources (all of which the single translation unit must include).
 */
class CudaKernelsTest {
    static final Path CUDA = Path.of("src/main/cuda");
    static final Pattern HEADING = Pattern.compile("^### (`[a-z0-9_]+`(?:, `[a-z0-9_]+`)*)\\s*$");
    static final Pattern NAME = Pattern.compile("`([a-z0-9_]+)`");
    static final Pattern KERNEL = Pattern.compile("LG_KERNEL\\s+void\\s+(?:__launch_bounds__\\([^)]*\\)\\s*)?([A-Za-z_][A-Za-z0-9_]*)\\s*\\(");
    static final Pattern INCLUDE = Pattern.compile("^#include \"([^\"]+\\.cu)\"", Pattern.MULTILINE);

    @Test
    void namesAreUniqueAndReadOnlyViewMatches() {
        assertEquals(CudaKernels.NAMES.length, new HashSet<>(List.of(CudaKernels.NAMES)).size(), "duplicate kernel name");
        assertEquals(List.of(CudaKernels.NAMES), CudaKernels.names());
    }

    @Test
    void readmeDocumentsExactlyTheNamedKernelsInOrder() throws IOException {
        List<String> documented = new ArrayList<>();
        for (String line : Files.readAllLines(CUDA.resolve("README.md"))) {
            Matcher h = HEADING.matcher(line);
            if (h.matches()) {
                Matcher n = NAME.matcher(h.group(1));
                while (n.find()) {
                    documented.add(n.group(1));
                }
            }
        }
        assertEquals(List.of(CudaKernels.NAMES), documented, "README kernel headings vs CudaKernels.NAMES");
    }

    @Test
    void sourcesDefineExactlyTheNamedKernels() throws IOException {
        Set<String> defined = new TreeSet<>();
        for (Path cu : cudaFiles()) {
            Matcher m = KERNEL.matcher(Files.readString(cu));
            while (m.find()) {
                assertTrue(defined.add(m.group(1)), "kernel " + m.group(1) + " defined twice (again in " + cu + ")");
            }
        }
        assertEquals(new TreeSet<>(List.of(CudaKernels.NAMES)), defined, "LG_KERNEL definitions vs CudaKernels.NAMES");
    }

    @Test
    void theTranslationUnitIncludesEveryKernelFile() throws IOException {
        Set<String> included = new TreeSet<>();
        Matcher m = INCLUDE.matcher(Files.readString(CUDA.resolve("lora_gateway.cu")));
        while (m.find()) {
            included.add(m.group(1));
        }
        Set<String> files = new TreeSet<>();
        for (Path cu : cudaFiles()) {
            if (!cu.getFileName().toString().equals("lora_gateway.cu")) {
                files.add(CUDA.relativize(cu).toString().replace('\\', '/'));
            }
        }
        assertEquals(files, included, "#include lines of lora_gateway.cu vs the .cu files");
    }

    @Test
    void attentionLaunchShapes() {
        // Llama-3 8B: 32 heads, 8 KV heads -> 8 blocks across, 4 rows per prefill block
        assertEquals(8, CudaKernels.attentionGridX(32, 8));
        assertEquals(4, CudaKernels.attentionPrefillRows(32, 8));
        // multi-head: one query head per KV head, 16 rows per block
        assertEquals(12, CudaKernels.attentionGridX(12, 12));
        assertEquals(16, CudaKernels.attentionPrefillRows(12, 12));
        // multi-query with 40 heads: chunks of 16, 16, 8
        assertEquals(3, CudaKernels.attentionGridX(40, 1));
        assertEquals(1, CudaKernels.attentionPrefillRows(40, 1));
        // group 7: 2 rows x 7 heads = 14 vectors
        assertEquals(2, CudaKernels.attentionPrefillRows(28, 4));
        assertEquals(41_088, CudaKernels.attentionSharedBytes(128));
        assertTrue(CudaKernels.attentionSharedBytes(153) <= CudaKernels.DEFAULT_SHARED_BYTES);
        assertTrue(CudaKernels.attentionSharedBytes(154) > CudaKernels.DEFAULT_SHARED_BYTES);
    }

    static List<Path> cudaFiles() throws IOException {
        try (Stream<Path> s = Files.walk(CUDA)) {
            return s.filter(p -> p.toString().endsWith(".cu")).sorted().toList();
        }
    }
}
