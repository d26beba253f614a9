package dev.loragateway.adapters;

import java.util.Objects;

/**
 * Identifies one registered adapter across all tenants: two tenants may both own
 * {@code support-bot}, and a system adapter ({@code --lora-modules}) is never equal to a tenant's
 * adapter even when a tenant happens to be called {@code system}. Use it as the key of caches and
 * device slots; the user-facing id stays the bare {@link #name()}.
 *
 * @param system true for a {@code --lora-modules} adapter
 * @param tenant the owning tenant id, or {@code "system"} for system adapters
 * @param name the adapter's name (its model id in requests)
 */
public record AdapterKey(boolean system, String tenant, String name) {
    /** The owner name system adapters report ({@code owned_by}). */
    public static final String SYSTEM_OWNER = "system";

    public AdapterKey {
        Objects.requireNonNull(tenant, "tenant");
        Objects.requireNonNull(name, "name");
    }

    /** The key of tenant {@code tenant}'s adapter {@code name}. */
    public static AdapterKey of(String tenant, String name) {
        return new AdapterKey(false, tenant, name);
    }

    /** The key of the system adapter {@code name}. */
    public static AdapterKey system(String name) {
        return new AdapterKey(true, SYSTEM_OWNER, name);
    }

    /** {@code tenant/name}, or {@code system:name} for a system adapter (for logs). */
    @Override
    public String toString() {
        return system ? "system:" + name : tenant + "/" + name;
    }
}
