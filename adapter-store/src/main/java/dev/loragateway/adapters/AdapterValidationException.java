package dev.loragateway.adapters;

/**
 * An adapter that cannot be accepted: a malformed or unsupported {@code adapter_config.json}, an
 * unreadable {@code adapter_model.safetensors}, tensors that do not fit the base model, or an
 * invalid name. The message is written for the user who uploaded the adapter (the HTTP layer
 * returns it as a 400): it names the field or tensor at fault and, for sizes, both numbers, and it
 * never contains server paths beyond a file name.
 */
public final class AdapterValidationException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public AdapterValidationException(String message) {
        super(message);
    }

    public AdapterValidationException(String message, Throwable cause) {
        super(message, cause);
    }
}
