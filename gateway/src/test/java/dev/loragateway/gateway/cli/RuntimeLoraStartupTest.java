package dev.loragateway.gateway.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * {@code serve --allow-runtime-lora-updating} and {@code --allowed-lora-dir} refuse combinations
 * that cannot work at start, with exit code 2 and a message naming the flags. Each fails in option
 * validation, before any model loads or any thread starts.
 */
class RuntimeLoraStartupTest {
    @TempDir
    static Path dir;

    private record Run(int code, String err) {
    }

    private static Run serve(String... options) {
        StringWriter err = new StringWriter();
        List<String> args = new ArrayList<>(List.of("serve", "--backend", "cpu", "--port", "0", "--data-dir", dir.resolve("data").toString()));
        args.addAll(List.of(options));
        int code = new CommandLine(new Main()).setOut(new PrintWriter(new StringWriter())).setErr(new PrintWriter(err))
            .execute(args.toArray(String[]::new));
        return new Run(code, err.toString());
    }

    @Test
    void anAllowedDirWithoutTheFlagFailsStartup() {
        Run r = serve("--allowed-lora-dir", dir.toString());
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--allowed-lora-dir needs --allow-runtime-lora-updating"), r.err());
    }

    @Test
    void anAllowedDirWithApiKeysInAClusterFailsStartup() throws Exception {
        Path keys = dir.resolve("keys.json");
        java.nio.file.Files.writeString(keys, "{\"tenants\": [{\"id\": \"acme\", \"keys\": [\"sk-a\"]}], \"operator_keys\": [\"sk-o\"]}");
        Run r = serve("--api-keys", keys.toString(), "--allowed-lora-dir", dir.toString(), "--cluster-name", "c", "--cluster-members",
            "127.0.0.1:5701");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--allowed-lora-dir is for a single node, not with --cluster-name"), r.err());
    }

    @Test
    void anAllowedDirThatIsNoDirectoryFailsStartup() throws Exception {
        Path file = Files.writeString(dir.resolve("a-file"), "x");
        Run r = serve("--allow-runtime-lora-updating", "--allowed-lora-dir", dir + "," + file);
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--allowed-lora-dir " + file + " is not a directory"), r.err());
    }

    @Test
    void theFlagInAClusterFailsStartup() {
        Run r = serve("--allow-runtime-lora-updating", "--cluster-name", "c", "--cluster-members", "127.0.0.1:5701");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("--allow-runtime-lora-updating is for a single node, not with --cluster-name"), r.err());
    }
}
