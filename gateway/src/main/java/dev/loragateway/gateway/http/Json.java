package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;

/** Typed reads of request fields; a wrong type is a 400 that names the field and what it expected. */
final class Json {
    private Json() {
    }

    static boolean absent(JsonNode body, String field) {
        JsonNode n = body.get(field);
        return n == null || n.isNull();
    }

    static String string(JsonNode body, String field, boolean required) {
        JsonNode n = body.get(field);
        if (n == null || n.isNull()) {
            if (required) {
                throw ApiError.badRequest("'" + field + "' is required", field);
            }
            return null;
        }
        if (!n.isTextual()) {
            throw ApiError.badRequest("'" + field + "' must be a string, got " + kind(n), field);
        }
        return n.asText();
    }

    static int integer(JsonNode body, String field, int dflt, int min, int max) {
        return (int) integral(body, field, dflt, min, max);
    }

    /** An integer field as a long, for limits checked by the caller beyond 32 bits. */
    static long integral(JsonNode body, String field, long dflt, long min, long max) {
        JsonNode n = body.get(field);
        if (n == null || n.isNull()) {
            return dflt;
        }
        if (!n.isIntegralNumber() && !(n.isNumber() && n.asDouble() == Math.rint(n.asDouble()))) {
            throw ApiError.badRequest("'" + field + "' must be an integer, got " + kind(n) + " " + n, field);
        }
        if (!n.canConvertToLong() || n.asLong() < min || n.asLong() > max) {
            String range = max != Long.MAX_VALUE ? "between " + min + " and " + max
                : n.canConvertToLong() ? "at least " + min : "a 64-bit integer";
            throw ApiError.badRequest("'" + field + "' must be " + range + ", got " + n, field);
        }
        return n.asLong();
    }

    static long longValue(JsonNode body, String field, long dflt) {
        JsonNode n = body.get(field);
        if (n == null || n.isNull()) {
            return dflt;
        }
        if (!n.isIntegralNumber() || !n.canConvertToLong()) {
            throw ApiError.badRequest("'" + field + "' must be a 64-bit integer, got " + n, field);
        }
        return n.asLong();
    }

    static double number(JsonNode body, String field, double dflt, double min, double max) {
        JsonNode n = body.get(field);
        if (n == null || n.isNull()) {
            return dflt;
        }
        if (!n.isNumber()) {
            throw ApiError.badRequest("'" + field + "' must be a number, got " + kind(n), field);
        }
        double v = n.asDouble();
        if (!(v >= min && v <= max)) {
            throw ApiError.badRequest("'" + field + "' must be between " + min + " and " + max + ", got " + n, field);
        }
        return v;
    }

    static boolean bool(JsonNode body, String field, boolean dflt) {
        JsonNode n = body.get(field);
        if (n == null || n.isNull()) {
            return dflt;
        }
        if (!n.isBoolean()) {
            throw ApiError.badRequest("'" + field + "' must be a boolean, got " + kind(n), field);
        }
        return n.asBoolean();
    }

    static String kind(JsonNode n) {
        if (n.isTextual()) {
            return "a string";
        }
        if (n.isNumber()) {
            return "a number";
        }
        if (n.isBoolean()) {
            return "a boolean";
        }
        if (n.isArray()) {
            return "an array";
        }
        if (n.isObject()) {
            return "an object";
        }
        return "null";
    }
}
