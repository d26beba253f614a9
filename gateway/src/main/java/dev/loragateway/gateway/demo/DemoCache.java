package dev.loragateway.gateway.demo;

import java.io.IOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.Comparator;
import java.util.stream.Stream;

/**
 * Generated models kept in a cache folder ({@code $LORA_GATEWAY_CACHE}, else
 * {@code ~/.cache/lora-gateway}), written once: into a temporary sibling, then renamed into place,
 * so concurrent starts and interrupted writes never see half a model.
 */
public final class DemoCache {
    private DemoCache() {
    }

    static Path root() {
        String env = System.getenv("LORA_GATEWAY_CACHE");
        return env != null && !env.isBlank() ? Paths.get(env) : Paths.get(System.getProperty("user.home"), ".cache", "lora-gateway");
    }

    /** The model generated with {@code options}, written on first use under {@code name}. */
    public static Path get(String name, DemoModel.Options options) throws IOException {
        Path dir = root().resolve(name);
        if (Files.isRegularFile(dir.resolve("config.json"))) {
            return dir;
        }
        Files.createDirectories(root());
        Path tmp = Files.createTempDirectory(root(), "." + name + "-");
        try {
            DemoModel.write(tmp, options);
            try {
                Files.move(tmp, dir, StandardCopyOption.ATOMIC_MOVE);
            } catch (FileAlreadyExistsException | AtomicMoveNotSupportedException | java.nio.file.DirectoryNotEmptyException e) {
                if (!Files.isRegularFile(dir.resolve("config.json"))) {
                    throw e;
                }
            }
        } finally {
            deleteTree(tmp);
        }
        return dir;
    }

    /** The embedded demo model served when {@code serve} gets no {@code --model}. */
    public static Path demo() throws IOException {
        return get("demo-v1", DemoModel.Options.tiny());
    }

    private static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) {
            return;
        }
        try (Stream<Path> s = Files.walk(p)) {
            for (Path q : (Iterable<Path>) s.sorted(Comparator.reverseOrder())::iterator) {
                Files.deleteIfExists(q);
            }
        }
    }
}
