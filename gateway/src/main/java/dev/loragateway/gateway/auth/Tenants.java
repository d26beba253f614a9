package dev.loragateway.gateway.auth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * Who may call the API: the {@code --api-keys} file's tenants and their keys and limits, or, with
 * no file, one tenant {@code default} that every caller is, without limits.
 *
 * <pre>
 * { "tenants": [
 *     { "id": "acme",   "keys": ["sk-acme-1", "sk-acme-2"] },
 *     { "id": "globex", "keys": ["sk-globex-1"], "max_adapters": 100,
 *       "max_requests_per_second": 20, "max_concurrent_requests": 8 }
 *   ],
 *   "operator_keys": ["sk-ops-1"] }
 * </pre>
 *
 * Operator keys (optional) belong to no tenant and open no {@code /v1/} route but vLLM's
 * {@code /v1/load_lora_adapter} and {@code /v1/unload_lora_adapter} (with
 * {@code --allow-runtime-lora-updating}; they take nothing else); they let {@code GET /metrics} on
 * the API port show its tenant labels, which anonymous callers and tenants never see there. A key may not be both a tenant's and an operator's.
 *
 * Keys are kept as SHA-256 digests and a presented key is compared with every one of them in
 * constant time ({@link MessageDigest#isEqual}), so neither the comparison nor the search reveals
 * how much of a key was right or which tenant's key came close.
 */
public final class Tenants {
    /** Tenant ids name directories of the adapter store. */
    public static final Pattern ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,63}");
    public static final String DEFAULT = "default";

    /** A tenant and its limits; a limit of 0 means none. */
    public record Tenant(String id, int maxAdapters, double maxRequestsPerSecond, int maxConcurrentRequests) {
        public static Tenant unlimited(String id) {
            return new Tenant(id, 0, 0, 0);
        }
    }

    private record Key(byte[] digest, Tenant tenant) {
    }

    private final boolean enabled;
    private final List<Key> keys;
    private final Map<String, Tenant> byId;
    private final List<byte[]> operatorKeys; // SHA-256 digests

    private Tenants(boolean enabled, List<Key> keys, Map<String, Tenant> byId, List<byte[]> operatorKeys) {
        this.enabled = enabled;
        this.keys = keys;
        this.byId = byId;
        this.operatorKeys = operatorKeys;
    }

    /** Auth off: every caller is tenant {@code default}. */
    public static Tenants open() {
        return new Tenants(false, List.of(), Map.of(DEFAULT, Tenant.unlimited(DEFAULT)), List.of());
    }

    /**
     * Reads an {@code --api-keys} file.
     *
     * @throws IllegalArgumentException naming what is wrong with it
     */
    public static Tenants load(Path file) {
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(Files.readString(file, StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read " + file + ": " + e.getMessage());
        }
        return parse(root, file.toString());
    }

    static Tenants parse(JsonNode root, String where) {
        if (root == null || !root.isObject() || !root.path("tenants").isArray()) {
            throw new IllegalArgumentException(where + ": expected {\"tenants\": [...]}");
        }
        List<Key> keys = new ArrayList<>();
        Map<String, Tenant> byId = new LinkedHashMap<>();
        Set<String> seenKeys = new HashSet<>();
        int i = 0;
        for (JsonNode t : root.get("tenants")) {
            String at = where + ": tenants[" + i++ + "]";
            if (!t.isObject() || !t.path("id").isTextual()) {
                throw new IllegalArgumentException(at + " needs a string \"id\"");
            }
            String id = t.get("id").asText();
            if (!ID.matcher(id).matches() || id.equals("system")) {
                throw new IllegalArgumentException(at + ": tenant id '" + id + "' must match " + ID.pattern() + " and not be 'system'");
            }
            if (byId.containsKey(id)) {
                throw new IllegalArgumentException(at + ": tenant '" + id + "' appears twice");
            }
            Tenant tenant = new Tenant(id, nonNegativeInt(t, "max_adapters", at), nonNegativeNumber(t, "max_requests_per_second", at),
                nonNegativeInt(t, "max_concurrent_requests", at));
            JsonNode ks = t.get("keys");
            if (ks == null || !ks.isArray() || ks.isEmpty()) {
                throw new IllegalArgumentException(at + " (" + id + ") needs a non-empty \"keys\" array");
            }
            for (JsonNode k : ks) {
                if (!k.isTextual() || k.asText().isEmpty()) {
                    throw new IllegalArgumentException(at + " (" + id + "): keys must be non-empty strings");
                }
                if (!seenKeys.add(k.asText())) {
                    throw new IllegalArgumentException(at + " (" + id + "): a key is listed twice");
                }
                keys.add(new Key(digest(k.asText()), tenant));
            }
            byId.put(id, tenant);
        }
        if (byId.isEmpty()) {
            throw new IllegalArgumentException(where + ": no tenants");
        }
        List<byte[]> operators = new ArrayList<>();
        JsonNode ops = root.get("operator_keys");
        if (ops != null && !ops.isNull()) {
            if (!ops.isArray()) {
                throw new IllegalArgumentException(where + ": \"operator_keys\" must be an array of strings");
            }
            for (JsonNode k : ops) {
                if (!k.isTextual() || k.asText().isEmpty()) {
                    throw new IllegalArgumentException(where + ": operator_keys must be non-empty strings");
                }
                if (!seenKeys.add(k.asText())) {
                    throw new IllegalArgumentException(where + ": an operator key is listed twice or is also a tenant's key");
                }
                operators.add(digest(k.asText()));
            }
        }
        return new Tenants(true, List.copyOf(keys), Map.copyOf(byId), List.copyOf(operators));
    }

    private static int nonNegativeInt(JsonNode t, String field, String at) {
        JsonNode v = t.get(field);
        if (v == null || v.isNull()) {
            return 0;
        }
        if (!v.isIntegralNumber() || v.asLong() < 0 || v.asLong() > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(at + ": \"" + field + "\" must be a non-negative integer, got " + v);
        }
        return v.asInt();
    }

    private static double nonNegativeNumber(JsonNode t, String field, String at) {
        JsonNode v = t.get(field);
        if (v == null || v.isNull()) {
            return 0;
        }
        if (!v.isNumber() || v.asDouble() < 0 || !Double.isFinite(v.asDouble())) {
            throw new IllegalArgumentException(at + ": \"" + field + "\" must be a non-negative number, got " + v);
        }
        return v.asDouble();
    }

    /** Whether callers must present a key. */
    public boolean enabled() {
        return enabled;
    }

    public Optional<Tenant> byId(String id) {
        return Optional.ofNullable(byId.get(id));
    }

    public int size() {
        return byId.size();
    }

    /**
     * The tenant of an {@code Authorization} header value ({@code Bearer KEY}); empty when the key
     * is missing or unknown. With auth off, always the default tenant.
     */
    public Optional<Tenant> authenticate(String authorization) {
        if (!enabled) {
            return Optional.of(byId.get(DEFAULT));
        }
        if (authorization == null || authorization.length() < 7 || !authorization.regionMatches(true, 0, "Bearer ", 0, 7)) {
            return Optional.empty();
        }
        byte[] d = digest(authorization.substring(7).trim());
        Tenant found = null;
        for (Key k : keys) { // no early exit: every key is compared
            if (MessageDigest.isEqual(k.digest(), d)) {
                found = k.tenant();
            }
        }
        return Optional.ofNullable(found);
    }

    /**
     * Whether an {@code Authorization} header value carries an operator key; always false with
     * auth off. Compared as tenant keys are: every digest, in constant time.
     */
    public boolean isOperator(String authorization) {
        if (!enabled || authorization == null || authorization.length() < 7 || !authorization.regionMatches(true, 0, "Bearer ", 0, 7)) {
            return false;
        }
        byte[] d = digest(authorization.substring(7).trim());
        boolean found = false;
        for (byte[] k : operatorKeys) { // no early exit
            found |= MessageDigest.isEqual(k, d);
        }
        return found;
    }

    private static byte[] digest(String key) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(key.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
