package dev.loragateway.gateway.http;

/**
 * An error answered to the client as OpenAI does:
 * {@code {"error": {"message", "type", "param", "code"}}} with the HTTP status.
 */
public final class ApiError extends RuntimeException {
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
