package dev.loragateway.gateway.text;

import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.objects.date.StrftimeFormatter;
import java.time.Clock;
import java.time.ZonedDateTime;
import java.util.Locale;

/**
 * The global functions transformers adds to the Jinja environment of chat templates. Jinjava binds
 * functions to static methods; the clock therefore travels in the render context (key {@link
 * #CLOCK_VARIABLE}) rather than in a static field.
 */
final class TemplateFunctions {

    /** Context variable holding the {@link Clock} that {@code strftime_now} reads. */
    static final String CLOCK_VARIABLE = "__lora_gateway_clock__";

    private TemplateFunctions() {}

    /** Thrown by {@code raise_exception(msg)}; {@link ChatTemplate} finds it in the cause chain. */
    static final class RaisedException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        RaisedException(String message) {
            super(message, null, false, false);
        }
    }

    /** {@code raise_exception(message)}: aborts rendering with the template's message. */
    public static Object raiseException(Object message) {
        throw new RaisedException(String.valueOf(message));
    }

    /** {@code strftime_now(format)}: the current local time in a Python strftime format. */
    public static String strftimeNow(String format) {
        Clock clock = Clock.systemDefaultZone();
        JinjavaInterpreter interpreter = JinjavaInterpreter.getCurrent();
        if (interpreter != null
                && interpreter.getContext().get(CLOCK_VARIABLE) instanceof Clock injected) {
            clock = injected;
        }
        return StrftimeFormatter.format(ZonedDateTime.now(clock), format, Locale.ENGLISH);
    }
}
