package dev.loragateway.gateway.text;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.interpret.Context;
import com.hubspot.jinjava.interpret.InterpreterFactory;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;

/**
 * Makes interpreters that print booleans as Python does ({@code {{ loop.last }}} gives {@code
 * True}, not {@code true}). Everything else prints as Jinjava's "pyish" mapper does. {@code
 * None} still prints as "" because Jinjava cannot tell {@code none} from an undefined variable.
 */
final class PyInterpreterFactory implements InterpreterFactory {

    @Override
    public JinjavaInterpreter newInstance(JinjavaInterpreter orig) {
        return new PyInterpreter(orig);
    }

    @Override
    public JinjavaInterpreter newInstance(Jinjava application, Context context,
            JinjavaConfig renderConfig) {
        return new PyInterpreter(application, context, renderConfig);
    }

    private static final class PyInterpreter extends JinjavaInterpreter {
        PyInterpreter(JinjavaInterpreter orig) {
            super(orig);
        }

        PyInterpreter(Jinjava application, Context context, JinjavaConfig config) {
            super(application, context, config);
        }

        @Override
        public String getAsString(Object object) {
            if (object instanceof Boolean b) {
                return b ? "True" : "False";
            }
            return super.getAsString(object);
        }
    }
}
