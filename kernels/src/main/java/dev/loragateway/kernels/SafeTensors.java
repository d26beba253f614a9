package dev.loragateway.kernels;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads safetensors files: an 8-byte little-endian header length, a JSON header
 * {@code {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}}, then raw data.
 *
 * <p>Every tensor is a read-only memory mapping of its byte range: opening a 2 GB file costs a few
 * page-table entries, not 2 GB of heap. Malformed files fail with {@link SafeTensorsException}
 * naming the file, the tensor and the problem, before any tensor is handed out.
 */
public final class SafeTensors {
    /** Largest JSON header we accept (the reference implementation uses 100 MB). */
    static final long MAX_HEADER_BYTES = 100L << 20;
    private static final ObjectMapper JSON = new ObjectMapper()
        .enable(com.fasterxml.jackson.databind.DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

    private SafeTensors() {
    }

    /** Opens one safetensors file; the returned map keeps the header's order. */
    public static Map<String, Tensor> open(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long fileSize = ch.size();
            if (fileSize < 8) {
                throw new SafeTensorsException(file, null, "file is " + fileSize + " bytes, too short for the 8-byte header length");
            }
            ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(ch, lenBuf, 0);
            long headerLen = lenBuf.getLong(0);
            if (headerLen < 0 || headerLen > fileSize - 8) {
                throw new SafeTensorsException(file, null, "header length " + Long.toUnsignedString(headerLen)
                    + " runs past the end of the file (" + fileSize + " bytes)");
            }
            if (headerLen > MAX_HEADER_BYTES) {
                throw new SafeTensorsException(file, null, "header length " + headerLen + " exceeds the limit of " + MAX_HEADER_BYTES);
            }
            ByteBuffer headerBuf = ByteBuffer.allocate((int) headerLen);
            readFully(ch, headerBuf, 8);
            JsonNode header;
            try {
                header = JSON.readTree(new String(headerBuf.array(), StandardCharsets.UTF_8));
            } catch (JsonProcessingException e) {
                throw new SafeTensorsException(file, null, "header is not valid JSON: " + e.getOriginalMessage());
            }
            if (header == null || !header.isObject()) {
                throw new SafeTensorsException(file, null, "header is not a JSON object");
            }
            long dataStart = 8 + headerLen;
            long dataSize = fileSize - dataStart;
            List<Entry> entries = parseEntries(file, header, dataSize);
            checkOverlaps(file, entries);
            Map<String, Tensor> out = new LinkedHashMap<>();
            for (Entry e : entries) {
                ByteBuffer buf = e.end == e.begin
                    ? ByteBuffer.allocate(0)
                    : ch.map(FileChannel.MapMode.READ_ONLY, dataStart + e.begin, e.end - e.begin);
                out.put(e.name, new Tensor(e.name, e.dtype, e.shape, buf.order(ByteOrder.LITTLE_ENDIAN)));
            }
            return out;
        }
    }

    /** The {@code __metadata__} string map of a file's header (empty when absent). */
    public static Map<String, String> metadata(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            if (ch.size() < 8) {
                throw new SafeTensorsException(file, null, "file is " + ch.size() + " bytes, too short for the 8-byte header length");
            }
            ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(ch, lenBuf, 0);
            long headerLen = lenBuf.getLong(0);
            if (headerLen < 0 || headerLen > ch.size() - 8 || headerLen > MAX_HEADER_BYTES) {
                throw new SafeTensorsException(file, null, "header length " + headerLen + " is out of range");
            }
            ByteBuffer headerBuf = ByteBuffer.allocate((int) headerLen);
            readFully(ch, headerBuf, 8);
            JsonNode meta;
            try {
                meta = JSON.readTree(new String(headerBuf.array(), StandardCharsets.UTF_8)).get("__metadata__");
            } catch (JsonProcessingException e) {
                throw new SafeTensorsException(file, null, "header is not valid JSON: " + e.getOriginalMessage());
            }
            Map<String, String> out = new LinkedHashMap<>();
            if (meta != null && meta.isObject()) {
                meta.fields().forEachRemaining(f -> out.put(f.getKey(), f.getValue().asText()));
            }
            return out;
        }
    }

    /**
     * Opens the weights of a Hugging Face model directory: {@code model.safetensors.index.json}
     * (sharded) when present, else {@code model.safetensors}, else every {@code *.safetensors} file.
     */
    public static Map<String, Tensor> openDirectory(Path dir) throws IOException {
        Path index = dir.resolve("model.safetensors.index.json");
        List<Path> files = new ArrayList<>();
        Map<String, String> weightMap = null;
        if (Files.isRegularFile(index)) {
            JsonNode root;
            try {
                root = JSON.readTree(index.toFile());
            } catch (JsonProcessingException e) {
                throw new SafeTensorsException(index, null, "index is not valid JSON: " + e.getOriginalMessage());
            }
            JsonNode wm = root == null ? null : root.get("weight_map");
            if (wm == null || !wm.isObject()) {
                throw new SafeTensorsException(index, null, "index has no \"weight_map\" object");
            }
            weightMap = new LinkedHashMap<>();
            for (Iterator<Map.Entry<String, JsonNode>> it = wm.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> f = it.next();
                String shard = f.getValue().asText();
                Path p = dir.resolve(shard).normalize();
                if (!p.getParent().equals(dir.normalize()) && !p.startsWith(dir.normalize())) {
                    throw new SafeTensorsException(index, f.getKey(), "shard path '" + shard + "' leaves the model directory");
                }
                weightMap.put(f.getKey(), shard);
                if (!files.contains(p)) {
                    files.add(p);
                }
            }
        } else if (Files.isRegularFile(dir.resolve("model.safetensors"))) {
            files.add(dir.resolve("model.safetensors"));
        } else {
            try (var s = Files.list(dir)) {
                s.filter(p -> p.getFileName().toString().endsWith(".safetensors")).sorted().forEach(files::add);
            }
        }
        if (files.isEmpty()) {
            throw new SafeTensorsException(dir, null, "no *.safetensors weights in the directory");
        }
        Map<String, Tensor> all = new LinkedHashMap<>();
        Map<String, Path> origin = new LinkedHashMap<>();
        for (Path f : files) {
            if (!Files.isRegularFile(f)) {
                throw new SafeTensorsException(f, null, "shard listed in model.safetensors.index.json is missing");
            }
            for (Map.Entry<String, Tensor> e : open(f).entrySet()) {
                if (all.put(e.getKey(), e.getValue()) != null) {
                    throw new SafeTensorsException(f, e.getKey(), "tensor appears in more than one shard");
                }
                origin.put(e.getKey(), f);
            }
        }
        if (weightMap != null) {
            for (Map.Entry<String, String> e : weightMap.entrySet()) {
                Path named = dir.resolve(e.getValue()).normalize();
                Path actual = origin.get(e.getKey());
                if (actual == null || !actual.normalize().equals(named)) {
                    throw new SafeTensorsException(named, e.getKey(), "tensor listed in the index is not in its shard"
                        + (actual == null ? "" : " (it is in " + actual.getFileName() + ")"));
                }
            }
        }
        return all;
    }

    /**
     * Writes tensors as one safetensors file, atomically: a temporary file in the same folder,
     * renamed into place once complete.
     */
    public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) throws IOException {
        SafeTensorsWriter w = new SafeTensorsWriter();
        for (Tensor t : tensors.values()) {
            w.declare(t.name(), t.dtype(), t.shape());
        }
        float[] chunk = new float[1 << 14];
        w.write(file, metadata, (spec, out) -> { // widening and narrowing back is exact for every dtype
            Tensor t = tensors.get(spec.name());
            for (long i = 0; i < t.size(); i += chunk.length) {
                int n = (int) Math.min(chunk.length, t.size() - i);
                for (int k = 0; k < n; k++) {
                    chunk[k] = t.get(i + k);
                }
                out.write(chunk, 0, n);
            }
        });
    }

    private record Entry(String name, DType dtype, int[] shape, long begin, long end) {
    }

    private static List<Entry> parseEntries(Path file, JsonNode header, long dataSize) throws SafeTensorsException {
        List<Entry> entries = new ArrayList<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = header.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> f = it.next();
            String name = f.getKey();
            if (name.equals("__metadata__")) {
                continue;
            }
            JsonNode n = f.getValue();
            if (!n.isObject()) {
                throw new SafeTensorsException(file, name, "entry is not a JSON object");
            }
            JsonNode dt = n.get("dtype");
            JsonNode sh = n.get("shape");
            JsonNode off = n.get("data_offsets");
            if (dt == null || !dt.isTextual()) {
                throw new SafeTensorsException(file, name, "missing or non-string \"dtype\"");
            }
            DType dtype;
            try {
                dtype = DType.fromSafetensors(dt.asText());
            } catch (IllegalArgumentException e) {
                throw new SafeTensorsException(file, name, e.getMessage());
            }
            if (sh == null || !sh.isArray()) {
                throw new SafeTensorsException(file, name, "missing or non-array \"shape\"");
            }
            int[] shape = new int[sh.size()];
            long count = 1;
            for (int i = 0; i < shape.length; i++) {
                JsonNode d = sh.get(i);
                if (!d.canConvertToLong() || !d.isIntegralNumber() || d.asLong() < 0 || d.asLong() > Integer.MAX_VALUE) {
                    throw new SafeTensorsException(file, name, "shape dimension " + i + " is not a non-negative integer: " + d);
                }
                shape[i] = (int) d.asLong();
                try {
                    count = Math.multiplyExact(count, shape[i]);
                } catch (ArithmeticException overflow) {
                    throw new SafeTensorsException(file, name, "shape " + sh + " has more elements than a 64-bit count holds");
                }
            }
            if (off == null || !off.isArray() || off.size() != 2 || !off.get(0).isIntegralNumber() || !off.get(1).isIntegralNumber()) {
                throw new SafeTensorsException(file, name, "\"data_offsets\" must be [begin, end] integers");
            }
            long begin = off.get(0).asLong();
            long end = off.get(1).asLong();
            if (begin < 0 || end < begin || end > dataSize) {
                throw new SafeTensorsException(file, name, "data_offsets [" + begin + ", " + end
                    + "] are out of range: the data section has " + dataSize + " bytes");
            }
            long expected;
            try {
                expected = Math.multiplyExact(count, (long) dtype.bytes());
            } catch (ArithmeticException overflow) {
                throw new SafeTensorsException(file, name, "shape " + sh + " of " + dtype + " needs more bytes than a 64-bit count holds");
            }
            if (end - begin != expected) {
                throw new SafeTensorsException(file, name, "byte count " + (end - begin) + " does not match "
                    + dtype + " x " + java.util.Arrays.toString(shape) + " = " + expected + " bytes");
            }
            entries.add(new Entry(name, dtype, shape, begin, end));
        }
        return entries;
    }

    private static void checkOverlaps(Path file, List<Entry> entries) throws SafeTensorsException {
        List<Entry> sorted = new ArrayList<>(entries);
        sorted.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
        for (int i = 1; i < sorted.size(); i++) {
            Entry prev = sorted.get(i - 1);
            Entry cur = sorted.get(i);
            if (cur.begin < prev.end) {
                throw new SafeTensorsException(file, cur.name, "data_offsets [" + cur.begin + ", " + cur.end
                    + "] overlap tensor " + prev.name + " [" + prev.begin + ", " + prev.end + "]");
            }
        }
    }

    private static void readFully(FileChannel ch, ByteBuffer buf, long pos) throws IOException {
        while (buf.hasRemaining()) {
            int n = ch.read(buf, pos);
            if (n < 0) {
                throw new IOException("unexpected end of file");
            }
            pos += n;
        }
        buf.flip();
    }
}
