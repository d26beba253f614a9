package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.gateway.demo.DemoAdapters;
import dev.loragateway.gateway.demo.DemoModel;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Consumer;

/**
 * Upload bodies written by hand for {@link AdaptersHttpTest}: multipart/form-data as curl sends it,
 * and PEFT adapters for the tiny demo model whose config and safetensors bytes a test can break in
 * one place (a shape, a rank, a value, an offset, the header length).
 */
final class UploadFixtures {
    static final ObjectMapper JSON = new ObjectMapper();
    static final DemoModel.Options MODEL = DemoModel.Options.tiny();

    private UploadFixtures() {
    }

    /** A multipart/form-data body, parts in the order added. */
    static final class Multipart {
        final String boundary = "----lora-gateway-test-" + Long.toHexString(new Random().nextLong());
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();

        Multipart field(String name, String value) {
            head("Content-Disposition: form-data; name=\"" + name + "\"\r\n\r\n");
            out.writeBytes(value.getBytes(StandardCharsets.UTF_8));
            out.writeBytes("\r\n".getBytes(StandardCharsets.US_ASCII));
            return this;
        }

        Multipart file(String name, String filename, byte[] content) {
            head("Content-Disposition: form-data; name=\"" + name + "\"; filename=\"" + filename + "\"\r\n"
                + "Content-Type: application/octet-stream\r\n\r\n");
            out.writeBytes(content);
            out.writeBytes("\r\n".getBytes(StandardCharsets.US_ASCII));
            return this;
        }

        private void head(String s) {
            out.writeBytes(("--" + boundary + "\r\n" + s).getBytes(StandardCharsets.UTF_8));
        }

        String contentType() {
            return "multipart/form-data; boundary=" + boundary;
        }

        byte[] bytes() {
            ByteArrayOutputStream all = new ByteArrayOutputStream();
            all.writeBytes(out.toByteArray());
            all.writeBytes(("--" + boundary + "--\r\n").getBytes(StandardCharsets.US_ASCII));
            return all.toByteArray();
        }
    }

    /** A tensor to encode: shape and float32 values. */
    record T(int[] shape, float[] values) {
    }

    /** An adapter's two files as uploaded. */
    record Files2(byte[] config, byte[] model) {
        /** The standard upload: {@code name}, {@code adapter_config}, {@code adapter_model}. */
        Multipart form(String name) {
            return new Multipart().field("name", name).file("adapter_config", "adapter_config.json", config)
                .file("adapter_model", "adapter_model.safetensors", model);
        }
    }

    /** The files of a demo adapter as {@code DemoModel.write} left them in {@code modelDir/adapters/NAME}. */
    static Files2 demo(Path modelDir, String name) {
        Path d = modelDir.resolve("adapters").resolve(name);
        try {
            return new Files2(Files.readAllBytes(d.resolve("adapter_config.json")), Files.readAllBytes(d.resolve("adapter_model.safetensors")));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** An adapter being built: a PEFT config and tensors, both editable before {@link #files}. */
    static final class Peft {
        final ObjectNode config = JSON.createObjectNode();
        final Map<String, T> tensors = new LinkedHashMap<>();
        /** Applied to the safetensors header (JSON) before encoding. */
        Consumer<ObjectNode> headerTweak = h -> { };

        /** Rank {@code r} on {@code targets} in every layer, random weights strong enough to change the output. */
        static Peft random(int r, int alpha, long seed, String... targets) {
            Peft p = new Peft();
            p.config.put("base_model_name_or_path", "demo").put("bias", "none").put("fan_in_fan_out", false)
                .put("lora_alpha", alpha).put("lora_dropout", 0.0).put("peft_type", "LORA").put("r", r)
                .put("task_type", "CAUSAL_LM").put("use_dora", false).put("use_rslora", false);
            List.of(targets).forEach(p.config.putArray("target_modules")::add);
            Random rnd = new Random(seed);
            double bStd = 0.5 / ((double) alpha / r * Math.sqrt(r));
            for (int l = 0; l < MODEL.layers(); l++) {
                for (String m : targets) {
                    int[] oi = DemoAdapters.outIn(m, MODEL);
                    p.tensors.put(DemoAdapters.tensorName(l, m, 'A'), gaussian(rnd, 1 / Math.sqrt(oi[1]), r, oi[1]));
                    p.tensors.put(DemoAdapters.tensorName(l, m, 'B'), gaussian(rnd, bStd, oi[0], r));
                }
            }
            return p;
        }

        Peft edit(Consumer<Peft> change) {
            change.accept(this);
            return this;
        }

        /** Bytes of the tensor data as stored (the adapter object's {@code bytes}). */
        long dataBytes() {
            return tensors.values().stream().mapToLong(t -> 4L * t.values().length).sum();
        }

        Files2 files() {
            try {
                return new Files2(JSON.writeValueAsBytes(config), safetensors(tensors, headerTweak));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    static T gaussian(Random rnd, double std, int... shape) {
        float[] v = new float[shape[0] * shape[1]];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (rnd.nextGaussian() * std);
        }
        return new T(shape, v);
    }

    /** The safetensors encoding: 8-byte little-endian header length, JSON header padded to 8, F32 data. */
    static byte[] safetensors(Map<String, T> tensors, Consumer<ObjectNode> headerTweak) throws IOException {
        ObjectNode header = JSON.createObjectNode();
        header.putObject("__metadata__").put("format", "pt");
        long off = 0;
        for (var e : tensors.entrySet()) {
            ObjectNode t = header.putObject(e.getKey()).put("dtype", "F32");
            for (int d : e.getValue().shape()) {
                t.withArray("shape").add(d);
            }
            long len = 4L * e.getValue().values().length;
            t.putArray("data_offsets").add(off).add(off + len);
            off += len;
        }
        headerTweak.accept(header);
        byte[] h = JSON.writeValueAsBytes(header);
        int padded = (h.length + 7) / 8 * 8;
        ByteBuffer b = ByteBuffer.allocate(8 + padded + (int) off).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(padded).put(h);
        for (int i = h.length; i < padded; i++) {
            b.put((byte) ' ');
        }
        for (T t : tensors.values()) {
            for (float f : t.values()) {
                b.putFloat(f);
            }
        }
        return b.array();
    }
}
