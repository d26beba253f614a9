package dev.loragateway.gateway.http;

import com.openai.client.OpenAIClient;
import dev.loragateway.gateway.text.TextTokenizer;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;

/**
 * What the OpenAI SDK tests share: the {@link SdkServers}, started once per test class and closed
 * after it, the demo tokenizer, and SDK clients of the open server and of the adapter's twin.
 */
abstract class SdkTestBase {
    @TempDir
    static Path dir;
    static SdkServers servers;
    static TextTokenizer tokenizer;
    static OpenAIClient client; // auth off, the demo adapters registered
    static OpenAIClient twin;   // a base-only server of SdkServers.ADAPTER's merged weights

    @BeforeAll
    static void startServers() throws Exception {
        servers = new SdkServers(dir);
        tokenizer = servers.tokenizer;
        client = servers.client(servers.openBase, "sk-anything");
        twin = servers.client(servers.twinBase, "sk-anything");
    }

    @AfterAll
    static void stopServers() {
        servers.close();
    }
}
