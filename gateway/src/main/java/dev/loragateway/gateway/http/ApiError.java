package dev.loragateway.gateway.http;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.loragateway.adapters.AdapterLoadException;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.NonFiniteLogitsException;
import java.util.concurrent.CompletionException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * An error answered to the client as OpenAI does:
 * {@code {"error": {"message", "type", "param", "code"}}} with the HTTP status. {@link #of} is the
 * one place that turns any failure into one, for JSON responses and for the error event that ends
 * a stream alike.
 */
public final class ApiError extends RuntimeException {
    private static final Logger LOG = LoggerFactory.getLogger(ApiError.class);
    /** The error code of a request whose sequence had no finite logits ({@link NonFiniteLogitsException}). */
    static final String NON_FINITE_LOGITS = "non_finite_logits";

    private final int status;
    private final String type;
    private final String param;
    private final String code;

    public ApiError(int status, String type, String message, String param, String code) {
        super(message, null, false, false);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
    }

    /** 400 for a bad value of request field {@code param}. */
    public static ApiError badRequest(String message, String param) {
        return new ApiError(400, "invalid_request_error", message, param, null);
    }

    /** 404 for a model (base or adapter) the caller cannot see. */
    public static ApiError modelNotFound(String model) {
        return new ApiError(404, "invalid_request_error", "The model `" + model + "` does not exist.", "model", "model_not_found");
    }

    /**
     * What the client is told of {@code failure} (a {@link CompletionException} is unwrapped): an
     * {@link ApiError} as it is; an {@link IllegalArgumentException} (the request's fault) 400; an
     * adapter that cannot load or an engine that stopped 503; logits that are not finite 500 with
     * code {@value #NON_FINITE_LOGITS} (logged as a warning, without a stack trace); anything else
     * an internal error, logged with its stack trace and never shown.
     *
     * @param requestId for the log line (null when unknown)
     */
    public static ApiError of(Throwable failure, String requestId) {
        Throwable t = failure instanceof CompletionException && failure.getCause() != null ? failure.getCause() : failure;
        if (t instanceof ApiError e) {
            return e;
        } else if (t instanceof IllegalArgumentException) {
            return badRequest(t.getMessage() != null ? t.getMessage() : "the request is invalid ("
                + t.getClass().getSimpleName() + " without a message)", null);
        } else if (t instanceof AdapterLoadException) {
            return new ApiError(503, "unavailable", t.getMessage(), "model", "adapter_unavailable");
        } else if (t instanceof Engine.UnavailableException) {
            return new ApiError(503, "unavailable", t.getMessage(), null, null);
        } else if (t instanceof NonFiniteLogitsException) { // the model's fault, said plainly: no stack trace to log
            LOG.warn("request {} failed: {}", requestId, t.getMessage());
            return new ApiError(500, "internal_error", t.getMessage(), null, NON_FINITE_LOGITS);
        }
        LOG.error("request {} failed", requestId, t);
        return new ApiError(500, "internal_error", "internal error", null, null);
    }

    /** {@code {"error": {"message", "type", "param", "code"}}}. */
    public ObjectNode toJson() {
        ObjectNode root = Json.MAPPER.createObjectNode();
        ObjectNode err = root.putObject("error");
        err.put("message", getMessage()).put("type", type);
        if (param == null) {
            err.putNull("param");
        } else {
            err.put("param", param);
        }
        if (code == null) {
            err.putNull("code");
        } else {
            err.put("code", code);
        }
        return root;
    }

    public int status() {
        return status;
    }

    public String type() {
        return type;
    }

    public String param() {
        return param;
    }

    public String code() {
        return code;
    }
}
