package dev.loragateway.gateway.demo;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.loragateway.batcher.ForwardPass;
import dev.loragateway.batcher.KvCache;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.ModelConfig;
import dev.loragateway.batcher.StepBatch;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.DType;
import dev.loragateway.kernels.SafeTensors;
import dev.loragateway.kernels.Tensor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DemoModelTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int[] PROMPT = {0, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100}; // bos id prepended below
    private static CpuBackend cpu;
    @TempDir
    static Path tmp;
    private static Path tiny;

    @BeforeAll
    static void setUp() throws Exception {
        cpu = new CpuBackend(2);
        tiny = tmp.resolve("tiny");
        DemoModel.write(tiny, DemoModel.Options.tiny());
    }

    @AfterAll
    static void tearDown() {
        cpu.close();
    }

    private static List<Path> files(Path dir) throws Exception {
        try (Stream<Path> s = Files.walk(dir)) {
            return s.filter(Files::isRegularFile).map(dir::relativize).sorted().collect(Collectors.toList());
        }
    }

    @Test
    void sameOptionsGiveByteIdenticalFiles() throws Exception {
        Path again = tmp.resolve("again");
        DemoModel.write(again, DemoModel.Options.tiny());
        List<Path> a = files(tiny);
        assertEquals(a, files(again));
        assertTrue(a.contains(Path.of("config.json")) && a.contains(Path.of("generation_config.json"))
            && a.contains(Path.of("model.safetensors")) && a.contains(Path.of("tokenizer.json"))
            && a.contains(Path.of("tokenizer_config.json")), a.toString());
        for (Path p : a) {
            assertArrayEquals(Files.readAllBytes(tiny.resolve(p)), Files.readAllBytes(again.resolve(p)), p.toString());
        }
        assertTrue(Files.size(tiny.resolve("model.safetensors")) < 2_000_000, "tiny model is small");
        Path otherSeed = tmp.resolve("other-seed");
        DemoModel.write(otherSeed, DemoModel.Options.tiny().withSeed(7));
        assertFalse(Arrays.equals(Files.readAllBytes(tiny.resolve("model.safetensors")),
            Files.readAllBytes(otherSeed.resolve("model.safetensors"))));
    }

    @Test
    void randomAdaptersAreValidPeftFilesAndDifferBySeed() throws Exception {
        Path dir = tmp.resolve("many");
        var spec = new DemoAdapters.Spec("x1", 8, 16, DemoAdapters.ALL_MODULES, false);
        DemoAdapters.writeRandom(dir, DemoModel.Options.tiny(), spec, 11);
        DemoAdapters.writeRandom(dir, DemoModel.Options.tiny(), new DemoAdapters.Spec("x2", 8, 16, DemoAdapters.ALL_MODULES, false), 12);
        var cfg = dev.loragateway.adapters.AdapterConfig.parse(Files.readAllBytes(dir.resolve("x1/adapter_config.json")));
        assertEquals(8, cfg.r());
        Map<String, Tensor> s1 = SafeTensors.open(dir.resolve("x1/adapter_model.safetensors"));
        Map<String, Tensor> s2 = SafeTensors.open(dir.resolve("x2/adapter_model.safetensors"));
        {
            String name = DemoAdapters.tensorName(1, "down_proj", 'B');
            Tensor a1 = s1.get(name);
            Tensor a2 = s2.get(name);
            assertArrayEquals(a1.shape(), a2.shape());
            assertFalse(Arrays.equals(a1.toFloats(), a2.toFloats()), "seeds give other weights");
            assertEquals(2 * 7 * 2, s1.size(), "A and B for 7 modules in 2 layers");
        }
    }

    @Test
    void loadsAsLlamaInF32AndBf16() throws Exception {
        DemoModel.Options small = new DemoModel.Options(32, 80, 2, 4, 1, 320, DType.BF16, 3);
        for (DemoModel.Options o : List.of(DemoModel.Options.tiny(), small, small.withDtype(DType.F32))) {
            Path dir = tmp.resolve("load-" + o.dtype() + "-" + o.hiddenSize());
            DemoModel.write(dir, o);
            LlamaModel m = LlamaModel.load(dir);
            ModelConfig c = m.config();
            assertEquals(o.vocabSize(), c.vocabSize());
            assertEquals(o.headDim(), c.headDim());
            assertEquals(o.kvHeads(), c.numKvHeads());
            assertEquals(500000.0, c.ropeTheta());
            assertEquals(o.dtype(), m.embedding().dtype());
            assertEquals(o.dtype(), m.layer(0).q().dtype());
            JsonNode cfg = JSON.readTree(dir.resolve("config.json").toFile());
            assertEquals(DemoModel.torchDtype(o.dtype()), cfg.get("torch_dtype").asText());
            assertEquals("LlamaForCausalLM", cfg.get("architectures").get(0).asText());
            Map<String, Integer> special = specialIds(dir);
            assertEquals(special.get("<|begin_of_text|>"), c.bosTokenId());
            assertEquals(special.get("<|eot_id|>"), cfg.get("eos_token_id").asInt());
            assertTrue(c.isEos(special.get("<|eot_id|>")) && c.isEos(special.get("<|end_of_text|>")));

            float[] logits = lastLogits(m, prompt(c));
            double mean = 0;
            for (float v : logits) {
                assertTrue(Float.isFinite(v));
                mean += v;
            }
            mean /= logits.length;
            double var = 0;
            for (float v : logits) {
                var += (v - mean) * (v - mean);
            }
            double std = Math.sqrt(var / logits.length);
            System.out.printf("%s hidden %d: logit std %.3f%n", o.dtype(), o.hiddenSize(), std);
            assertTrue(std > 0.5 && std < 20, "logit std " + std);
        }
    }

    @Test
    void tokenizerVocabEqualsConfigVocab() throws Exception {
        JsonNode tok = JSON.readTree(tiny.resolve("tokenizer.json").toFile());
        Set<Integer> ids = new HashSet<>();
        tok.path("model").path("vocab").forEach(n -> ids.add(n.asInt()));
        tok.path("added_tokens").forEach(n -> ids.add(n.path("id").asInt()));
        int vocab = JSON.readTree(tiny.resolve("config.json").toFile()).get("vocab_size").asInt();
        assertEquals(vocab, ids.size());
        assertEquals(vocab - 1, ids.stream().mapToInt(Integer::intValue).max().getAsInt());
        assertEquals(0, ids.stream().mapToInt(Integer::intValue).min().getAsInt());
        JsonNode gen = JSON.readTree(tiny.resolve("generation_config.json").toFile());
        assertEquals(2, gen.get("eos_token_id").size());
    }

    @Test
    void adaptersHaveTensorsForTheirTargets() throws Exception {
        DemoModel.Options o = DemoModel.Options.tiny();
        assertEquals(4, DemoAdapters.ALL.size());
        for (DemoAdapters.Spec s : DemoAdapters.ALL) {
            Path d = tiny.resolve("adapters").resolve(s.name());
            JsonNode cfg = JSON.readTree(d.resolve("adapter_config.json").toFile());
            assertEquals("LORA", cfg.get("peft_type").asText());
            assertEquals("CAUSAL_LM", cfg.get("task_type").asText());
            assertEquals(s.r(), cfg.get("r").asInt());
            assertEquals(s.alpha(), cfg.get("lora_alpha").asInt());
            assertEquals(s.useRslora(), cfg.get("use_rslora").asBoolean());
            assertEquals("none", cfg.get("bias").asText());
            assertFalse(cfg.get("fan_in_fan_out").asBoolean());
            assertFalse(cfg.get("use_dora").asBoolean());
            assertTrue(cfg.get("modules_to_save").isNull() && cfg.get("layers_to_transform").isNull());
            List<String> targets = new ArrayList<>();
            cfg.get("target_modules").forEach(n -> targets.add(n.asText()));
            assertEquals(s.targets(), targets);

            Map<String, Tensor> t = SafeTensors.open(d.resolve("adapter_model.safetensors"));
            assertEquals(2 * o.layers() * s.targets().size(), t.size(), s.name());
            for (int l = 0; l < o.layers(); l++) {
                for (String m : s.targets()) {
                    int[] oi = DemoAdapters.outIn(m, o);
                    Tensor a = t.get(DemoAdapters.tensorName(l, m, 'A'));
                    Tensor b = t.get(DemoAdapters.tensorName(l, m, 'B'));
                    assertNotNull(a, s.name() + " layer " + l + " " + m + " lora_A");
                    assertNotNull(b, s.name() + " layer " + l + " " + m + " lora_B");
                    assertArrayEquals(new int[] {s.r(), oi[1]}, a.shape());
                    assertArrayEquals(new int[] {oi[0], s.r()}, b.shape());
                    assertEquals(o.dtype(), b.dtype());
                    double sq = 0;
                    for (float v : b.toFloats()) {
                        assertTrue(Float.isFinite(v));
                        sq += v * v;
                    }
                    assertTrue(sq > 0, "lora_B is non-zero");
                }
            }
        }
        assertTrue(SafeTensors.open(tiny.resolve("adapters/demo-r4/adapter_model.safetensors")).keySet()
            .contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
        assertTrue(SafeTensors.open(tiny.resolve("adapters/demo-r8-mlp/adapter_model.safetensors")).keySet()
            .contains("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"));
    }

    @Test
    void greedyDecodingVariesAndEveryAdapterChangesIt() throws Exception {
        LlamaModel base = LlamaModel.load(tiny);
        int[] prompt = prompt(base.config());
        int[] baseOut = greedy(base, prompt, 32);
        System.out.println("base greedy: " + Arrays.toString(baseOut));
        long distinct = Arrays.stream(baseOut).distinct().count();
        assertTrue(distinct >= 8, "greedy output has only " + distinct + " distinct tokens: " + Arrays.toString(baseOut));
        int[] tail = Arrays.copyOfRange(baseOut, 16, 32);
        assertTrue(Arrays.stream(tail).distinct().count() > 2, "greedy output settles into a loop: " + Arrays.toString(baseOut));

        Map<String, Tensor> weights = SafeTensors.openDirectory(tiny);
        for (DemoAdapters.Spec s : DemoAdapters.ALL) {
            Map<String, Tensor> ad = SafeTensors.open(tiny.resolve("adapters").resolve(s.name()).resolve("adapter_model.safetensors"));
            Map<String, Tensor> merged = new LinkedHashMap<>(weights);
            for (int l = 0; l < base.config().numLayers(); l++) {
                for (String m : s.targets()) {
                    String name = "model.layers." + l + "." + DemoAdapters.block(m) + "." + m + ".weight";
                    merged.put(name, merge(weights.get(name), ad.get(DemoAdapters.tensorName(l, m, 'A')),
                        ad.get(DemoAdapters.tensorName(l, m, 'B')), s.scaling()));
                }
            }
            int[] out = greedy(LlamaModel.fromWeights(ModelConfig.load(tiny), merged), prompt, 32);
            System.out.println(s.name() + " greedy: " + Arrays.toString(out));
            assertNotEquals(Arrays.toString(baseOut), Arrays.toString(out), s.name() + " does not change the output");
            int same = 0;
            while (same < out.length && out[same] == baseOut[same]) {
                same++;
            }
            assertTrue(same < 16, s.name() + " agrees with the base model for " + same + " tokens");
        }
    }

    /** {@code W + scaling · B·A}, W: (out, in), A: (r, in), B: (out, r). */
    private static Tensor merge(Tensor w, Tensor a, Tensor b, double scaling) {
        int out = w.dim(0);
        int in = w.dim(1);
        int r = a.dim(0);
        float[] wv = w.toFloats();
        float[] av = a.toFloats();
        float[] bv = b.toFloats();
        for (int i = 0; i < out; i++) {
            for (int k = 0; k < r; k++) {
                float s = (float) (scaling * bv[i * r + k]);
                for (int j = 0; j < in; j++) {
                    wv[i * in + j] += s * av[k * in + j];
                }
            }
        }
        return Tensor.of(w.name(), w.dtype(), wv, out, in);
    }

    private static int[] prompt(ModelConfig c) {
        int[] p = PROMPT.clone();
        p[0] = c.bosTokenId();
        return p;
    }

    private static Map<String, Integer> specialIds(Path dir) throws Exception {
        Map<String, Integer> out = new LinkedHashMap<>();
        JSON.readTree(dir.resolve("tokenizer.json").toFile()).path("added_tokens")
            .forEach(n -> out.put(n.path("content").asText(), n.path("id").asInt()));
        return out;
    }

    private static float[] lastLogits(LlamaModel m, int[] tokens) {
        ForwardPass fp = new ForwardPass(m, cpu);
        KvCache cache = new KvCache(m.config(), tokens.length);
        StepBatch b = new StepBatch();
        for (int i = 0; i < tokens.length; i++) {
            b.add(cache, tokens[i], i == tokens.length - 1);
        }
        float[] logits = new float[m.config().vocabSize()];
        fp.step(b, logits);
        return logits;
    }

    private static int[] greedy(LlamaModel m, int[] prompt, int n) {
        ForwardPass fp = new ForwardPass(m, cpu);
        KvCache cache = new KvCache(m.config(), prompt.length + n);
        StepBatch b = new StepBatch();
        for (int i = 0; i < prompt.length; i++) {
            b.add(cache, prompt[i], i == prompt.length - 1);
        }
        float[] logits = new float[m.config().vocabSize()];
        int[] out = new int[n];
        for (int t = 0; t < n; t++) {
            fp.step(b, logits);
            int best = 0;
            for (int v = 1; v < logits.length; v++) {
                if (logits[v] > logits[best]) {
                    best = v;
                }
            }
            out[t] = best;
            b.clear();
            b.add(cache, best, true);
        }
        return out;
    }
}
