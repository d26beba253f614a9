package dev.loragateway.adapters;

/** An adapter could not be brought to the device: it failed to load, or it can never fit. */
public final class AdapterLoadException extends RuntimeException {
    public AdapterLoadException(String message, Throwable cause) {
        super(message, cause);
    }
}
