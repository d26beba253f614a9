package dev.loragateway.gateway.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.gateway.demo.DemoModel;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * {@code serve --lora-modules} refuses at start, with exit code 2 and a message naming the module,
 * what an upload of the same files would get as a 400 or 409 (issue 12 items 7 and 8). It fails
 * before anything listens or any thread starts, so running it in this JVM leaves nothing behind.
 */
class LoraModulesStartupTest {
    @TempDir
    static Path dir;
    static Path model;

    @BeforeAll
    static void demoModel() throws Exception {
        model = dir.resolve("model");
        DemoModel.write(model, DemoModel.Options.tiny());
    }

    private record Run(int code, String err) {
    }

    private static Run serve(String loraModules) {
        StringWriter err = new StringWriter();
        int code = new CommandLine(new Main()).setOut(new PrintWriter(new StringWriter())).setErr(new PrintWriter(err))
            .execute("serve", "--model", model.toString(), "--model-id", "demo", "--backend", "cpu", "--port", "0",
                "--data-dir", dir.resolve("data").toString(), "--lora-modules", loraModules);
        return new Run(code, err.toString());
    }

    @Test
    void loraModuleNamedLikeTheBaseModelFailsStartup() {
        Path adapter = model.resolve("adapters").resolve("demo-r8");
        Run r = serve("demo=" + adapter);
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--lora-modules demo=" + adapter + ": adapter name 'demo' is the base model's id"), r.err());
    }

    @Test
    void loraModuleWithLoraAlpha1e308FailsStartupNamingTheFieldValueAndRange() throws Exception {
        Path huge = dir.resolve("huge-alpha");
        Files.createDirectories(huge);
        Path from = model.resolve("adapters").resolve("demo-r8");
        Files.copy(from.resolve("adapter_model.safetensors"), huge.resolve("adapter_model.safetensors"));
        ObjectMapper json = new ObjectMapper();
        ObjectNode config = (ObjectNode) json.readTree(from.resolve("adapter_config.json").toFile());
        Files.writeString(huge.resolve("adapter_config.json"), config.put("lora_alpha", 1e308).toString());
        Run r = serve("huge=" + huge);
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--lora-modules huge=" + huge + ": adapter_config.json: \"lora_alpha\" is 1.0E308, outside the"
            + " allowed range -10000 to 10000"), r.err());
    }
}
