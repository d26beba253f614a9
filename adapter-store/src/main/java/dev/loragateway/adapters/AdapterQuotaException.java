package dev.loragateway.adapters;

/**
 * The tenant already owns as many adapters as it may ({@code max_adapters} of {@code --api-keys}).
 * Decided under the registry's lock together with the name, so concurrent uploads never exceed
 * the quota. The HTTP layer maps it to 429.
 */
public final class AdapterQuotaException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int limit;

    public AdapterQuotaException(String message, int limit) {
        super(message);
        this.limit = limit;
    }

    /** The tenant's quota ({@code max_adapters}). */
    public int limit() {
        return limit;
    }
}
