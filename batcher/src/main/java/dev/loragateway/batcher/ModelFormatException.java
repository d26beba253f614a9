package dev.loragateway.batcher;

/** A model directory we cannot load: the message names the file or field and the problem. */
public final class ModelFormatException extends RuntimeException {
    public ModelFormatException(String message) {
        super(message);
    }
}
