package dev.loragateway.gateway.http;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import io.vertx.ext.web.RoutingContext;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * The gateway's one {@link ObjectMapper}, the strict parse of a request body, and typed reads of
 * request fields; a wrong type is a 400 that names the field and what it expected.
 */
public final class Json {
    /** Shared by every JSON read and write of the gateway (an {@code ObjectMapper} is thread-safe once configured). */
    public static final ObjectMapper MAPPER = new ObjectMapper();
    /** Request bodies: one JSON value and nothing after it ({@code {...} garbage} is malformed, not ignored). */
    private static final ObjectReader BODY_READER = MAPPER.reader().with(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

    private Json() {
    }

    /** Parses the body as strict UTF-8 JSON; anything else is a 400 that says what is wrong. */
    static JsonNode body(RoutingContext ctx) {
        var buf = ctx.body().buffer();
        if (buf == null || buf.length() == 0) {
            throw ApiError.badRequest("the request body is empty; send a JSON object", null);
        }
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(buf.getBytes())).toString();
        } catch (CharacterCodingException e) {
            throw ApiError.badRequest("the request body is not valid UTF-8", null);
        }
        try {
            return BODY_READER.readTree(text);
        } catch (JsonProcessingException e) {
            throw ApiError.badRequest("the request body is not valid JSON: " + e.getOriginalMessage(), null);
        }
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
