package dev.loragateway.kernels;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class SafeTensorsWriterTest {
    @TempDir
    Path tmp;

    /** Shapes that cover: scalar-like, empty, odd sizes, and one bigger than the 1 MB buffer. */
    private static final int[][] SHAPES = {{7}, {0}, {3, 5}, {2, 3, 4}, {640, 513}, {1}};

    private static float[] values(long seed, int n) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) ((r.nextDouble() - 0.5) * Math.pow(10, r.nextInt(-6, 4)));
        }
        return v;
    }

    private static int count(int[] shape) {
        int n = 1;
        for (int d : shape) {
            n *= d;
        }
        return n;
    }

    @ParameterizedTest
    @EnumSource(DType.class)
    void roundTripsThroughSafeTensorsOpen(DType dtype) throws Exception {
        SafeTensorsWriter w = new SafeTensorsWriter();
        Map<String, float[]> data = new LinkedHashMap<>();
        for (int i = 0; i < SHAPES.length; i++) {
            String name = "model.t" + i + ".weight";
            w.declare(name, dtype, SHAPES[i]);
            data.put(name, values(42 + i, count(SHAPES[i])));
        }
        Path file = tmp.resolve("m.safetensors");
        SplittableRandom chunks = new SplittableRandom(7);
        w.write(file, Map.of("format", "pt"), (t, out) -> {
            float[] v = data.get(t.name());
            int at = 0;
            while (at < v.length) { // uneven chunks, from single values to large runs
                int n = Math.min(v.length - at, 1 + chunks.nextInt(100_000));
                out.write(v, at, n);
                at += n;
            }
        });

        Map<String, Tensor> read = SafeTensors.open(file);
        assertEquals(List.copyOf(data.keySet()), List.copyOf(read.keySet()));
        assertEquals(Map.of("format", "pt"), SafeTensors.metadata(file));
        for (int i = 0; i < SHAPES.length; i++) {
            String name = "model.t" + i + ".weight";
            Tensor t = read.get(name);
            assertEquals(dtype, t.dtype());
            assertArrayEquals(SHAPES[i], t.shape());
            float[] expected = data.get(name).clone();
            for (int j = 0; j < expected.length; j++) {
                expected[j] = switch (dtype) {
                    case F32 -> expected[j];
                    case BF16 -> DType.bf16ToFloat(DType.floatToBf16(expected[j]));
                    case F16 -> DType.f16ToFloat(DType.floatToF16(expected[j]));
                };
            }
            assertArrayEquals(expected, t.toFloats(), name);
        }

        // byte-identical to the in-memory writer
        Map<String, Tensor> mem = new LinkedHashMap<>();
        for (int i = 0; i < SHAPES.length; i++) {
            String name = "model.t" + i + ".weight";
            mem.put(name, Tensor.of(name, dtype, data.get(name), SHAPES[i]));
        }
        Path ref = tmp.resolve("ref.safetensors");
        SafeTensors.write(ref, mem, Map.of("format", "pt"));
        assertArrayEquals(Files.readAllBytes(ref), Files.readAllBytes(file));
        long headerAndLen = Files.size(file) - w.dataBytes();
        assertEquals(0, headerAndLen % 8);
    }

    @Test
    void withoutMetadataHasNoMetadataEntry() throws Exception {
        Path file = tmp.resolve("plain.safetensors");
        new SafeTensorsWriter().declare("a", DType.F32, 2).write(file, null, (t, out) -> out.write(new float[] {1, 2}));
        assertEquals(Map.of(), SafeTensors.metadata(file));
        assertArrayEquals(new float[] {1, 2}, SafeTensors.open(file).get("a").toFloats());
    }

    @Test
    void wrongValueCountFailsAndLeavesNothing() throws Exception {
        Path file = tmp.resolve("bad.safetensors");
        SafeTensorsWriter w = new SafeTensorsWriter().declare("a", DType.BF16, 2, 3);
        assertThrows(IllegalStateException.class, () -> w.write(file, null, (t, out) -> out.write(new float[5])));
        assertThrows(IllegalStateException.class, () -> w.write(file, null, (t, out) -> out.write(new float[7])));
        try (Stream<Path> s = Files.list(tmp)) {
            assertEquals(0, s.count());
        }
        assertFalse(Files.exists(file));
        assertThrows(IllegalArgumentException.class, () -> w.declare("a", DType.F32, 1));
    }
}
