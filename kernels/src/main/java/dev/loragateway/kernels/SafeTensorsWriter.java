package dev.loragateway.kernels;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Writes a safetensors file whose tensors are produced on the fly, so that models of gigabytes can
 * be generated without holding them in the heap. Tensors are declared up front (name, dtype,
 * shape: the header is written first), then filled in declaration order through a {@link Fill}
 * callback that hands out floats in chunks; they are converted to each tensor's dtype into one
 * reusable 1 MB direct buffer and written straight to the file.
 *
 * <p>The format is that of {@link SafeTensors#write}: an 8-byte little-endian header length, the
 * JSON header (optional {@code __metadata__}, then the tensors with their {@code data_offsets})
 * padded with spaces to a multiple of 8, then the data. The file appears atomically: it is written
 * to a temporary file in the same folder and renamed into place once complete.
 *
 * <pre>
 * new SafeTensorsWriter()
 *     .declare("w", DType.BF16, 4096, 4096)
 *     .write(file, Map.of("format", "pt"), (t, out) -&gt; { ... out.write(chunk, 0, n); ... });
 * </pre>
 */
public final class SafeTensorsWriter {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int BUFFER_BYTES = 1 << 20;

    /** One declared tensor. */
    public record Spec(String name, DType dtype, int[] shape) {
        public Spec {
            shape = shape.clone();
        }

        /** Number of elements. */
        public long size() {
            long n = 1;
            for (int d : shape) {
                n = Math.multiplyExact(n, d);
            }
            return n;
        }

        /** Bytes as stored. */
        public long bytes() {
            return size() * dtype.bytes();
        }

        @Override
        public int[] shape() {
            return shape.clone();
        }

        @Override
        public String toString() {
            return name + " " + dtype + Arrays.toString(shape);
        }
    }

    /** Receives a tensor's values, row-major, in as many chunks as the producer likes. */
    public interface Sink {
        void write(float[] values, int off, int len) throws IOException;

        default void write(float[] values) throws IOException {
            write(values, 0, values.length);
        }
    }

    /** Produces the values of one tensor: exactly {@code tensor.size()} floats into {@code out}. */
    @FunctionalInterface
    public interface Fill {
        void fill(Spec tensor, Sink out) throws IOException;
    }

    private final List<Spec> specs = new ArrayList<>();
    private final Set<String> names = new HashSet<>();

    /** Declares the next tensor; data is filled in declaration order. */
    public SafeTensorsWriter declare(String name, DType dtype, int... shape) {
        if (name == null || name.isEmpty() || name.equals("__metadata__")) {
            throw new IllegalArgumentException("invalid tensor name '" + name + "'");
        }
        if (!names.add(name)) {
            throw new IllegalArgumentException("tensor " + name + " declared twice");
        }
        for (int d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException(name + ": negative dimension in shape " + Arrays.toString(shape));
            }
        }
        specs.add(new Spec(name, dtype, shape));
        return this;
    }

    /** The declared tensors, in order. */
    public List<Spec> tensors() {
        return List.copyOf(specs);
    }

    /** Total bytes of tensor data (the file is this plus the header). */
    public long dataBytes() {
        long b = 0;
        for (Spec s : specs) {
            b += s.bytes();
        }
        return b;
    }

    /**
     * Writes the file: header, then every declared tensor filled by {@code fill}, then an atomic
     * rename into place. {@code metadata} (may be null or empty) becomes {@code __metadata__}.
     * A fill that writes too few or too many values fails with {@link IllegalStateException} and
     * leaves no file behind.
     */
    public void write(Path file, Map<String, String> metadata, Fill fill) throws IOException {
        ByteBuffer head = header(metadata);
        Path parent = file.toAbsolutePath().getParent();
        Files.createDirectories(parent);
        // not Files.createTempFile: that makes the file owner-only (0600); this one gets the umask's mode
        Path tmp = parent.resolve("." + file.getFileName() + "." + java.util.UUID.randomUUID() + ".tmp");
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.CREATE_NEW)) {
            writeFully(ch, head);
            ByteBuffer buf = ByteBuffer.allocateDirect(BUFFER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
            for (Spec s : specs) {
                ChunkSink sink = new ChunkSink(ch, buf, s);
                fill.fill(s, sink);
                if (sink.written != sink.expected) {
                    throw new IllegalStateException("tensor " + s + " got " + sink.written + " values, expected " + sink.expected);
                }
                buf.flip();
                writeFully(ch, buf);
                buf.clear();
            }
            ch.force(true);
            ch.close();
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    private ByteBuffer header(Map<String, String> metadata) throws IOException {
        ObjectNode header = JSON.createObjectNode();
        if (metadata != null && !metadata.isEmpty()) {
            ObjectNode meta = header.putObject("__metadata__");
            metadata.forEach(meta::put);
        }
        long offset = 0;
        for (Spec s : specs) {
            ObjectNode n = header.putObject(s.name());
            n.put("dtype", s.dtype().safetensorsName());
            var shape = n.putArray("shape");
            for (int d : s.shape) {
                shape.add(d);
            }
            n.putArray("data_offsets").add(offset).add(offset + s.bytes());
            offset += s.bytes();
        }
        byte[] json = JSON.writeValueAsBytes(header);
        int padded = (json.length + 7) / 8 * 8;
        ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        head.putLong(padded).put(json);
        while (head.hasRemaining()) {
            head.put((byte) ' ');
        }
        head.flip();
        return head;
    }

    private static void writeFully(FileChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            ch.write(b);
        }
    }

    /** Converts floats to the tensor's dtype into the shared buffer, flushing it when full. */
    private static final class ChunkSink implements Sink {
        private final FileChannel ch;
        private final ByteBuffer buf;
        private final Spec spec;
        private final DType dtype;
        final long expected;
        long written;

        ChunkSink(FileChannel ch, ByteBuffer buf, Spec spec) {
            this.ch = ch;
            this.buf = buf;
            this.spec = spec;
            this.dtype = spec.dtype();
            this.expected = spec.size();
        }

        @Override
        public void write(float[] values, int off, int len) throws IOException {
            java.util.Objects.checkFromIndexSize(off, len, values.length);
            if (written + len > expected) {
                throw new IllegalStateException("tensor " + spec + " got more than its " + expected + " values");
            }
            int end = off + len;
            int per = dtype.bytes();
            while (off < end) {
                if (buf.remaining() < per) {
                    buf.flip();
                    writeFully(ch, buf);
                    buf.clear();
                }
                int n = Math.min(end - off, buf.remaining() / per);
                switch (dtype) {
                    case F32:
                        for (int i = off; i < off + n; i++) {
                            buf.putFloat(values[i]);
                        }
                        break;
                    case BF16:
                        for (int i = off; i < off + n; i++) {
                            buf.putShort(DType.floatToBf16(values[i]));
                        }
                        break;
                    case F16:
                        for (int i = off; i < off + n; i++) {
                            buf.putShort(DType.floatToF16(values[i]));
                        }
                        break;
                    default:
                        throw new AssertionError(dtype);
                }
                off += n;
            }
            written += len;
        }
    }
}
