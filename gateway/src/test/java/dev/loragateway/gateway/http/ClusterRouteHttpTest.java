package dev.loragateway.gateway.http;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Without the cluster flags nothing of the cluster starts, and {@code GET /v1/cluster} is a 404 that names them. */
class ClusterRouteHttpTest {
    @TempDir
    Path dir;

    @Test
    void withoutTheClusterFlagsV1ClusterIsA404NamingThem() throws Exception {
        try (DemoServer server = DemoServer.start(dir, 16, 256)) {
            HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(server.base + "/v1/cluster")).build(),
                HttpResponse.BodyHandlers.ofString());
            assertEquals(404, r.statusCode(), r.body());
            JsonNode err = Json.MAPPER.readTree(r.body()).get("error");
            assertEquals("not_in_cluster", err.get("code").asText(), r.body());
            assertTrue(err.get("message").asText().contains("--cluster-name"), r.body());
        }
    }
}
