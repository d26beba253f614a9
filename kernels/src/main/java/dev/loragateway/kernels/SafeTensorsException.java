package dev.loragateway.kernels;

import java.io.IOException;
import java.nio.file.Path;

/** A malformed safetensors file: the message names the file, the tensor (when one is at fault) and the problem. */
public final class SafeTensorsException extends IOException {
    private final transient Path file;
    private final String tensor;

    public SafeTensorsException(Path file, String tensor, String problem) {
        super(file.getFileName() + (tensor == null ? "" : ": tensor " + tensor) + ": " + problem);
        this.file = file;
        this.tensor = tensor;
    }

    public Path file() {
        return file;
    }

    /** The tensor at fault, or null when the problem is the file's. */
    public String tensor() {
        return tensor;
    }
}
