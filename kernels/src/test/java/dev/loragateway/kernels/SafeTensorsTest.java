package dev.loragateway.kernels;

import static dev.loragateway.kernels.Fixtures.gaussian;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@link SafeTensors#write} → {@link SafeTensors#open} round trips, and model directories (single file, sharded). */
class SafeTensorsTest {
    @TempDir
    Path dir;

    /** Tensors of every dtype and rank (scalar, empty, 1-3-D), in an order that is not alphabetical. */
    static Map<String, Tensor> sample(Random rnd, String prefix) {
        Map<String, Tensor> m = new LinkedHashMap<>();
        put(m, Tensor.of(prefix + "z.weight", DType.F32, gaussian(rnd, 15, 1, 0), 3, 5));
        put(m, Tensor.of(prefix + "a.bias", DType.BF16, gaussian(rnd, 7, 1, 0.5), 7));
        put(m, Tensor.of(prefix + "m.scalar", DType.F16, gaussian(rnd, 1, 1, 2)));
        put(m, Tensor.of(prefix + "layers.0.w", DType.F16, gaussian(rnd, 24, 3, 0), 2, 3, 4));
        put(m, Tensor.of(prefix + "empty", DType.F32, new float[0], 0, 4));
        put(m, Tensor.of(prefix + "b.bf", DType.BF16, gaussian(rnd, 12, 100, 0), 4, 1, 3));
        put(m, Tensor.of(prefix + "y.f32", DType.F32, gaussian(rnd, 33, 1e-3, 0), 33));
        return m;
    }

    private static void put(Map<String, Tensor> m, Tensor t) {
        m.put(t.name(), t);
    }

    static void assertSameTensors(Map<String, Tensor> expected, Map<String, Tensor> actual) {
        assertEquals(new ArrayList<>(expected.keySet()), new ArrayList<>(actual.keySet()), "names, in order");
        for (Tensor e : expected.values()) {
            Tensor a = actual.get(e.name());
            assertEquals(e.name(), a.name());
            assertEquals(e.dtype(), a.dtype(), e.name());
            assertArrayEquals(e.shape(), a.shape(), e.name());
            assertEquals(e.size(), a.size(), e.name());
            assertEquals(e.buffer(), a.buffer(), e.name() + ": stored bytes");
            for (long i = 0; i < e.size(); i++) {
                assertEquals(Float.floatToRawIntBits(e.get(i)), Float.floatToRawIntBits(a.get(i)), e.name() + "[" + i + "]");
            }
        }
    }

    @Test
    void roundTripKeepsValuesShapesOrderAndMetadata() throws IOException {
        Random rnd = new Random(1);
        Map<String, Tensor> tensors = sample(rnd, "");
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("format", "pt");
        meta.put("note", "ünïcode ✓ \"quoted\"");
        Path file = dir.resolve("model.safetensors");
        SafeTensors.write(file, tensors, meta);

        Map<String, Tensor> back = SafeTensors.open(file);
        assertSameTensors(tensors, back);
        assertEquals(meta, SafeTensors.metadata(file));
        assertEquals(List.of(file), Files.list(dir).collect(Collectors.toList()), "no temporary file left behind");

        // the values written are the inputs rounded to each dtype
        float[] src = gaussian(new Random(1), 15, 1, 0);
        for (int i = 0; i < 15; i++) {
            assertEquals(src[i], back.get("z.weight").get(i), 0f);
        }

        // the layout is the format's: 8-byte-aligned header, contiguous data_offsets, nothing after the data
        ByteBuffer all = ByteBuffer.wrap(Files.readAllBytes(file)).order(ByteOrder.LITTLE_ENDIAN);
        long headerLen = all.getLong(0);
        assertEquals(0, headerLen % 8, "header length " + headerLen);
        JsonNode header = new ObjectMapper().readTree(new String(all.array(), 8, (int) headerLen, StandardCharsets.UTF_8));
        long offset = 0;
        for (Tensor t : tensors.values()) {
            JsonNode off = header.get(t.name()).get("data_offsets");
            assertEquals(offset, off.get(0).asLong(), t.name());
            assertEquals(offset + t.bytes(), off.get(1).asLong(), t.name());
            offset += t.bytes();
        }
        assertEquals(8 + headerLen + offset, Files.size(file));
    }

    @Test
    void writeWithoutMetadataAndOverwrite() throws IOException {
        Path file = dir.resolve("sub/adapter.safetensors"); // parent folders are created
        SafeTensors.write(file, sample(new Random(2), "old."), null);
        Map<String, Tensor> tensors = sample(new Random(3), "new.");
        SafeTensors.write(file, tensors, Map.of());
        assertSameTensors(tensors, SafeTensors.open(file));
        assertEquals(Map.of(), SafeTensors.metadata(file));
        assertEquals(List.of(file), Files.list(file.getParent()).collect(Collectors.toList()));

        Path none = dir.resolve("none.safetensors");
        SafeTensors.write(none, new LinkedHashMap<>(), null);
        assertEquals(Map.of(), SafeTensors.open(none));
    }

    @Test
    void openDirectorySingleFile() throws IOException {
        Map<String, Tensor> tensors = sample(new Random(4), "");
        SafeTensors.write(dir.resolve("model.safetensors"), tensors, Map.of("format", "pt"));
        Files.writeString(dir.resolve("config.json"), "{}");
        assertSameTensors(tensors, SafeTensors.openDirectory(dir));
    }

    @Test
    void openDirectoryWithoutIndexReadsEverySafetensorsFile() throws IOException {
        Map<String, Tensor> a = sample(new Random(5), "a.");
        Map<String, Tensor> b = sample(new Random(6), "b.");
        SafeTensors.write(dir.resolve("b-part.safetensors"), b, null);
        SafeTensors.write(dir.resolve("a-part.safetensors"), a, null);
        Map<String, Tensor> expected = new LinkedHashMap<>(a); // files in name order
        expected.putAll(b);
        assertSameTensors(expected, SafeTensors.openDirectory(dir));
    }

    /** Two shards and an index; a stray .safetensors file not in the index must not be read. */
    private Map<String, Tensor> writeSharded(Map<String, String> extraIndexEntries) throws IOException {
        Map<String, Tensor> first = sample(new Random(7), "model.layers.0.");
        Map<String, Tensor> second = sample(new Random(8), "model.layers.1.");
        SafeTensors.write(dir.resolve("model-00001-of-00002.safetensors"), first, Map.of("format", "pt"));
        SafeTensors.write(dir.resolve("model-00002-of-00002.safetensors"), second, Map.of("format", "pt"));
        SafeTensors.write(dir.resolve("stray.safetensors"), first, null); // would collide if read
        Map<String, String> weightMap = new LinkedHashMap<>();
        second.keySet().forEach(k -> weightMap.put(k, "model-00002-of-00002.safetensors"));
        first.keySet().forEach(k -> weightMap.put(k, "model-00001-of-00002.safetensors"));
        weightMap.putAll(extraIndexEntries);
        writeIndex(weightMap);
        Map<String, Tensor> all = new LinkedHashMap<>(second);
        all.putAll(first);
        return all;
    }

    private void writeIndex(Map<String, String> weightMap) throws IOException {
        ObjectMapper json = new ObjectMapper();
        var root = json.createObjectNode();
        root.putObject("metadata").put("total_size", 1234);
        var wm = root.putObject("weight_map");
        weightMap.forEach(wm::put);
        Files.writeString(dir.resolve("model.safetensors.index.json"), json.writeValueAsString(root));
    }

    @Test
    void openDirectorySharded() throws IOException {
        Map<String, Tensor> expected = writeSharded(Map.of());
        Map<String, Tensor> opened = SafeTensors.openDirectory(dir);
        assertEquals(expected.keySet(), opened.keySet());
        for (Tensor t : expected.values()) {
            assertSameTensors(Map.of(t.name(), t), Map.of(t.name(), opened.get(t.name())));
        }
    }

    @Test
    void indexListingAMissingShard() throws IOException {
        writeSharded(Map.of("lm_head.weight", "model-00003-of-00003.safetensors"));
        var e = assertThrows(SafeTensorsException.class, () -> SafeTensors.openDirectory(dir));
        assertTrue(e.getMessage().contains("model-00003-of-00003.safetensors") && e.getMessage().contains("missing"), e.getMessage());
    }

    @Test
    void indexListingATensorAbsentFromItsShard() throws IOException {
        writeSharded(Map.of("lm_head.weight", "model-00002-of-00002.safetensors"));
        var e = assertThrows(SafeTensorsException.class, () -> SafeTensors.openDirectory(dir));
        assertEquals("lm_head.weight", e.tensor());
        assertTrue(e.getMessage().contains("lm_head.weight") && e.getMessage().contains("model-00002-of-00002.safetensors")
            && e.getMessage().contains("not in"), e.getMessage());
    }

    /** The index puts a tensor in shard 1 while it lives in shard 2: it is absent from the shard the index names. */
    @Test
    void indexNamingTheWrongShardForATensor() throws IOException {
        writeSharded(Map.of("model.layers.1.a.bias", "model-00001-of-00002.safetensors"));
        var e = assertThrows(SafeTensorsException.class, () -> SafeTensors.openDirectory(dir),
            "BUG SafeTensors.openDirectory: the index check only asks whether the tensor is in any shard, not in the one the index names");
        assertTrue(e.getMessage().contains("model.layers.1.a.bias") && e.getMessage().contains("model-00001-of-00002.safetensors"),
            e.getMessage());
    }

    @Test
    void aTensorInTwoShards() throws IOException {
        Map<String, Tensor> t = sample(new Random(9), "dup.");
        SafeTensors.write(dir.resolve("s1.safetensors"), t, null);
        SafeTensors.write(dir.resolve("s2.safetensors"), Map.of("dup.a.bias", t.get("dup.a.bias")), null);
        Map<String, String> wm = new LinkedHashMap<>();
        t.keySet().forEach(k -> wm.put(k, "s1.safetensors"));
        wm.put("dup.a.bias", "s2.safetensors");
        writeIndex(wm);
        var e = assertThrows(SafeTensorsException.class, () -> SafeTensors.openDirectory(dir));
        assertTrue(e.getMessage().contains("dup.a.bias") && e.getMessage().contains("s2.safetensors"), e.getMessage());
    }

    @Test
    void malformedIndexAndEscapingShardPaths() throws IOException {
        Files.writeString(dir.resolve("model.safetensors.index.json"), "{\"weight_map\": ");
        var e = assertThrows(SafeTensorsException.class, () -> SafeTensors.openDirectory(dir));
        assertTrue(e.getMessage().contains("model.safetensors.index.json") && e.getMessage().contains("JSON"), e.getMessage());

        Files.writeString(dir.resolve("model.safetensors.index.json"), "{\"metadata\": {}}");
        e = assertThrows(SafeTensorsException.class, () -> SafeTensors.openDirectory(dir));
        assertTrue(e.getMessage().contains("model.safetensors.index.json") && e.getMessage().contains("weight_map"), e.getMessage());

        writeIndex(Map.of("evil.weight", "../outside.safetensors"));
        e = assertThrows(SafeTensorsException.class, () -> SafeTensors.openDirectory(dir));
        assertEquals("evil.weight", e.tensor());
        assertTrue(e.getMessage().contains("../outside.safetensors") && e.getMessage().contains("evil.weight"), e.getMessage());
    }

    @Test
    void aDirectoryWithoutWeights() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{}");
        var e = assertThrows(SafeTensorsException.class, () -> SafeTensors.openDirectory(dir));
        assertTrue(e.getMessage().contains(dir.getFileName().toString()) && e.getMessage().contains("safetensors"), e.getMessage());
        assertEquals(List.of(dir.resolve("config.json")), Files.list(dir).collect(Collectors.toList()));
    }
}
