package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A chat request's {@code messages}, checked and turned into what a chat template reads: maps with
 * {@code role}, {@code content} (a string) and, when given, {@code name} and {@code tool_call_id}.
 * Every failure is a 400 whose {@code param} points at the message, e.g. {@code messages[2].role}.
 *
 * <ul>
 *   <li>roles: {@code system}, {@code user}, {@code assistant}, {@code tool}, {@code developer};
 *       {@code developer} (OpenAI's newer name for system instructions) is rendered as {@code
 *       system}, the role Hugging Face templates know;
 *   <li>content: a string, or OpenAI's array of parts where only {@code {"type": "text", "text"}}
 *       parts are accepted, their texts joined with nothing between them;
 *   <li>an assistant message may leave out {@code content} (OpenAI allows it beside tool calls): it
 *       renders as "".
 * </ul>
 */
final class ChatMessages {
    static final Set<String> ROLES = Set.of("system", "user", "assistant", "tool", "developer");
    private static final String ROLE_LIST = "'system', 'user', 'assistant', 'tool' and 'developer'";

    private ChatMessages() {
    }

    /** The messages of a request body's {@code messages} field. */
    static List<Map<String, Object>> parse(JsonNode messages) {
        if (messages == null || messages.isNull()) {
            throw ApiError.badRequest("'messages' is required", "messages");
        }
        if (!messages.isArray()) {
            throw ApiError.badRequest("'messages' must be an array of message objects, got " + Json.kind(messages), "messages");
        }
        if (messages.isEmpty()) {
            throw ApiError.badRequest("'messages' must contain at least one message, got an empty array", "messages");
        }
        List<Map<String, Object>> out = new ArrayList<>(messages.size());
        for (int i = 0; i < messages.size(); i++) {
            out.add(message(messages.get(i), "messages[" + i + "]"));
        }
        return out;
    }

    private static Map<String, Object> message(JsonNode m, String at) {
        if (!m.isObject()) {
            throw ApiError.badRequest("'" + at + "' must be an object with 'role' and 'content', got " + Json.kind(m), at);
        }
        JsonNode r = m.get("role");
        if (r == null || r.isNull()) {
            throw ApiError.badRequest("'" + at + ".role' is required", at + ".role");
        }
        if (!r.isTextual()) {
            throw ApiError.badRequest("'" + at + ".role' must be a string, got " + Json.kind(r), at + ".role");
        }
        String role = r.asText();
        if (!ROLES.contains(role)) {
            throw ApiError.badRequest("Invalid value for '" + at + ".role': '" + role + "'. Supported roles are " + ROLE_LIST + ".",
                at + ".role");
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("role", role.equals("developer") ? "system" : role);
        out.put("content", content(m.get("content"), role, at + ".content"));
        for (String field : new String[] {"name", "tool_call_id"}) {
            JsonNode v = m.get(field);
            if (v != null && !v.isNull()) {
                if (!v.isTextual()) {
                    throw ApiError.badRequest("'" + at + "." + field + "' must be a string, got " + Json.kind(v), at + "." + field);
                }
                out.put(field, v.asText());
            }
        }
        return out;
    }

    private static String content(JsonNode c, String role, String at) {
        if (c == null || c.isNull()) {
            if (role.equals("assistant")) {
                return "";
            }
            throw ApiError.badRequest("'" + at + "' is required for a '" + role + "' message", at);
        }
        if (c.isTextual()) {
            return c.asText();
        }
        if (!c.isArray()) {
            throw ApiError.badRequest("'" + at + "' must be a string or an array of text parts, got " + Json.kind(c), at);
        }
        StringBuilder text = new StringBuilder();
        for (int j = 0; j < c.size(); j++) {
            JsonNode part = c.get(j);
            String partAt = at + "[" + j + "]";
            if (!part.isObject()) {
                throw ApiError.badRequest("'" + partAt + "' must be an object like {\"type\": \"text\", \"text\": \"...\"}, got "
                    + Json.kind(part), partAt);
            }
            JsonNode type = part.get("type");
            if (type == null || !type.isTextual() || !type.asText().equals("text")) {
                String got = type == null || type.isNull() ? "no type" : type.isTextual() ? "type '" + type.asText() + "'" : Json.kind(type);
                throw ApiError.badRequest("'" + partAt + "' has " + got + "; only parts of type 'text' are supported", partAt + ".type");
            }
            JsonNode t = part.get("text");
            if (t == null || !t.isTextual()) {
                throw ApiError.badRequest("'" + partAt + ".text' must be a string, got " + (t == null ? "nothing" : Json.kind(t)),
                    partAt + ".text");
            }
            text.append(t.asText());
        }
        return text.toString();
    }
}
