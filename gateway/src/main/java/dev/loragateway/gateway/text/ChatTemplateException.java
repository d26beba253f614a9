package dev.loragateway.gateway.text;

/**
 * A chat template could not be rendered for the given messages: either the template itself called
 * {@code raise_exception(msg)} (e.g. "Conversation roles must alternate user/assistant/..."), then
 * {@link #getMessage()} is exactly the template's message and {@link #raisedByTemplate()} is true,
 * or rendering failed (syntax error, unknown method, ...), then the message is Jinjava's.
 *
 * <p>Both are the caller's problem for a given request (the HTTP layer answers 400), not a server
 * fault.
 */
public final class ChatTemplateException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    private final boolean raisedByTemplate;

    ChatTemplateException(String message, boolean raisedByTemplate, Throwable cause) {
        super(message, cause);
        this.raisedByTemplate = raisedByTemplate;
    }

    /** Whether the template's own {@code raise_exception} produced this error. */
    public boolean raisedByTemplate() {
        return raisedByTemplate;
    }
}
