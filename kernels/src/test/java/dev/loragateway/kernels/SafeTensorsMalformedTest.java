package dev.loragateway.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Malformed safetensors files, built byte by byte: each must fail with a
 * {@link SafeTensorsException} whose message names the file, the tensor at fault (where there is
 * one) and the problem.
 */
class SafeTensorsMalformedTest {
    private static final String T = "model.layers.3.mlp.up_proj.weight";

    @TempDir
    Path dir;
    private int files;

    /** A file: the 8-byte little-endian {@code declaredLength}, then {@code header}, then {@code dataBytes} bytes of data. */
    private Path raw(long declaredLength, byte[] header, int dataBytes) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(8 + header.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(declaredLength).put(header);
        for (int i = 0; i < dataBytes; i++) {
            b.put((byte) (i * 37 + 1));
        }
        Path file = dir.resolve("bad-" + files++ + ".safetensors");
        Files.write(file, b.array());
        return file;
    }

    /** A file whose header length is right: {@code header} (JSON text) followed by {@code dataBytes} bytes. */
    private Path file(String header, int dataBytes) throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        return raw(h.length, h, dataBytes);
    }

    /** A header with one tensor entry {@code T: {entryBody}}. */
    private Path entry(String entryBody, int dataBytes) throws IOException {
        return file("{\"" + T + "\": {" + entryBody + "}}", dataBytes);
    }

    /** Opens {@code file}, expecting a SafeTensorsException naming the file, {@code tensor} (if not null) and each of {@code problem}. */
    private static SafeTensorsException assertMalformed(Path file, String tensor, String... problem) {
        var e = assertThrows(SafeTensorsException.class, () -> SafeTensors.open(file), "opening " + file.getFileName() + " should fail");
        String m = e.getMessage();
        assertTrue(m.contains(file.getFileName().toString()), "message names the file: " + m);
        assertEquals(file, e.file());
        if (tensor != null) {
            assertTrue(m.contains(tensor), "message names tensor " + tensor + ": " + m);
            assertEquals(tensor, e.tensor(), m);
        }
        for (String p : problem) {
            assertTrue(m.toLowerCase(Locale.ROOT).contains(p.toLowerCase(Locale.ROOT)), "message states the problem (" + p + "): " + m);
        }
        return e;
    }

    @Test
    void fileShorterThanTheLengthField() throws IOException {
        for (int size : new int[] {0, 3, 7}) {
            Path f = dir.resolve("short-" + size + ".safetensors");
            Files.write(f, new byte[size]);
            assertMalformed(f, null, "short", String.valueOf(size));
        }
    }

    @Test
    void headerLengthPastTheEnd() throws IOException {
        byte[] h = "{}".getBytes(StandardCharsets.UTF_8);
        assertMalformed(raw(100, h, 10), null, "header length", "100", "past the end");
        assertMalformed(raw(h.length + 1, h, 0), null, "header length", "past the end");
        assertMalformed(raw(1L << 40, h, 0), null, "header length", "past the end");
        assertMalformed(raw(Long.MIN_VALUE, h, 0), null, "header length"); // negative as a signed long
        assertMalformed(raw(-1, h, 0), null, "header length");
    }

    @Test
    void headerNotJson() throws IOException {
        assertMalformed(file("{\"" + T + "\": {\"dtype\": \"F32\",", 0), null, "JSON");
        assertMalformed(file("not json at all", 0), null, "JSON");
        assertMalformed(file("{'single': 'quotes'}", 0), null, "JSON");
        assertMalformed(file("", 0), null, "JSON");
    }

    /** JSON text is one value; the format pads only with spaces. A second value after the object is not a header. */
    @Test
    void headerWithTrailingGarbage() throws IOException {
        Path f = file("{} {\"" + T + "\": 1}", 0);
        var e = assertThrows(SafeTensorsException.class, () -> SafeTensors.open(f),
            "BUG SafeTensors.open: Jackson's readTree stops after the first JSON value, so trailing garbage in the header is accepted");
        assertTrue(e.getMessage().contains(f.getFileName().toString()) && e.getMessage().contains("JSON"), e.getMessage());
    }

    @Test
    void headerNotAnObject() throws IOException {
        for (String h : new String[] {"[1, 2, 3]", "42", "\"text\"", "null", "true"}) {
            assertMalformed(file(h, 0), null, "object");
        }
    }

    @Test
    void entryNotAnObjectOrMissingFields() throws IOException {
        assertMalformed(file("{\"" + T + "\": 5}", 0), T, "object");
        assertMalformed(file("{\"" + T + "\": [\"F32\", [1], [0, 4]]}", 4), T, "object");
        assertMalformed(entry("\"shape\": [1], \"data_offsets\": [0, 4]", 4), T, "dtype");
        assertMalformed(entry("\"dtype\": 7, \"shape\": [1], \"data_offsets\": [0, 4]", 4), T, "dtype");
        assertMalformed(entry("\"dtype\": \"F32\", \"data_offsets\": [0, 4]", 4), T, "shape");
        assertMalformed(entry("\"dtype\": \"F32\", \"shape\": [1]", 4), T, "data_offsets");
    }

    @Test
    void unknownDtype() throws IOException {
        for (String dt : new String[] {"I8", "F64", "bf16", "F8_E4M3", "U8"}) {
            assertMalformed(entry("\"dtype\": \"" + dt + "\", \"shape\": [4], \"data_offsets\": [0, 4]", 4), T, dt);
        }
    }

    @Test
    void shapeNotNonNegativeIntegers() throws IOException {
        for (String shape : new String[] {"[-1, 4]", "[4, -4]", "[2.5, 2]", "[\"2\", 2]", "[null]", "[3000000000]", "\"4\"", "{\"0\": 4}"}) {
            assertMalformed(entry("\"dtype\": \"F32\", \"shape\": " + shape + ", \"data_offsets\": [0, 16]", 16), T, "shape");
        }
    }

    /** Dimensions that are each valid but whose element count × dtype size does not fit in a long. */
    @Test
    void shapeWhoseByteCountOverflows() throws IOException {
        // 2^30 · 2^30 · 4 elements · 4 bytes = 2^64: wraps to 0 and would match data_offsets [0, 0]
        Path wraps = entry("\"dtype\": \"F32\", \"shape\": [1073741824, 1073741824, 4], \"data_offsets\": [0, 0]", 0);
        assertThrows(SafeTensorsException.class, () -> SafeTensors.open(wraps),
            "BUG SafeTensors.parseEntries: count * dtype.bytes() overflows (not multiplyExact), so a 2^62-element tensor is accepted with 0 bytes");
        // (2^31 − 1)^3 overflows the element count itself
        Path huge = entry("\"dtype\": \"F32\", \"shape\": [2147483647, 2147483647, 2147483647], \"data_offsets\": [0, 4]", 4);
        Throwable t = assertThrows(Throwable.class, () -> SafeTensors.open(huge));
        assertTrue(t instanceof SafeTensorsException,
            "BUG SafeTensors.parseEntries: Math.multiplyExact's ArithmeticException escapes instead of a SafeTensorsException: " + t);
        assertTrue(t.getMessage().contains(T), t.getMessage());
    }

    @Test
    void dataOffsetsOutOfRangeOrMalformed() throws IOException {
        String dt = "\"dtype\": \"F32\", \"shape\": [4], ";
        assertMalformed(entry(dt + "\"data_offsets\": [0, 1000]", 16), T, "data_offsets", "1000");
        assertMalformed(entry(dt + "\"data_offsets\": [8, 24]", 16), T, "data_offsets", "24");
        assertMalformed(entry(dt + "\"data_offsets\": [16, 0]", 16), T, "data_offsets");
        assertMalformed(entry(dt + "\"data_offsets\": [-4, 12]", 16), T, "data_offsets");
        assertMalformed(entry(dt + "\"data_offsets\": [0]", 16), T, "data_offsets");
        assertMalformed(entry(dt + "\"data_offsets\": [0, 16, 32]", 32), T, "data_offsets");
        assertMalformed(entry(dt + "\"data_offsets\": [0, 16.0]", 16), T, "data_offsets");
        assertMalformed(entry(dt + "\"data_offsets\": \"0,16\"", 16), T, "data_offsets");
    }

    @Test
    void overlappingOffsets() throws IOException {
        String other = "model.layers.3.mlp.gate_proj.weight";
        String a = "\"" + other + "\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}";
        String b = "\"" + T + "\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}";
        for (String header : new String[] {"{" + a + ", " + b + "}", "{" + b + ", " + a + "}"}) {
            var e = assertMalformed(file(header, 24), T, "overlap");
            assertTrue(e.getMessage().contains(other), "names both tensors: " + e.getMessage());
        }
        // two tensors on exactly the same bytes
        String same = "{\"" + other + "\": {\"dtype\": \"BF16\", \"shape\": [2, 4], \"data_offsets\": [0, 16]}, "
            + "\"" + T + "\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}";
        var e = assertThrows(SafeTensorsException.class, () -> SafeTensors.open(file(same, 16)));
        assertTrue(e.getMessage().contains("overlap") && (e.getMessage().contains(T) || e.getMessage().contains(other)), e.getMessage());
    }

    @Test
    void byteCountNotMatchingDtypeTimesShape() throws IOException {
        assertMalformed(entry("\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]", 24), T, "20", "24");
        assertMalformed(entry("\"dtype\": \"BF16\", \"shape\": [5], \"data_offsets\": [0, 12]", 12), T, "12", "10");
        assertMalformed(entry("\"dtype\": \"F16\", \"shape\": [], \"data_offsets\": [0, 4]", 4), T, "4", "2");
        assertMalformed(entry("\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [0, 4]", 4), T, "4", "0");
    }

    @Test
    void validFileOfTheSameShapeOpens() throws IOException {
        // the helpers themselves build readable files: the failures above are the malformations, not the helper
        Path ok = entry("\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]", 24);
        Tensor t = SafeTensors.open(ok).get(T);
        assertEquals(6, t.size());
        ByteBuffer expected = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < 24; i++) {
            expected.put((byte) (i * 37 + 1));
        }
        for (int i = 0; i < 6; i++) {
            assertEquals(expected.getFloat(4 * i), t.get(i), 0f);
        }
        Path meta = file("{\"__metadata__\": {\"format\": \"pt\"}, \"" + T + "\": {\"dtype\": \"BF16\", \"shape\": [2], "
            + "\"data_offsets\": [0, 4]}}    ", 4);
        assertEquals(2, SafeTensors.open(meta).get(T).size());
    }
}
