package dev.loragateway.adapters;

/**
 * The adapter name is already taken for that tenant: by one of its own adapters, or by a system
 * adapter ({@code --lora-modules}) which every tenant sees. The HTTP layer maps it to 409.
 */
public final class AdapterConflictException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public AdapterConflictException(String message) {
        super(message);
    }
}
