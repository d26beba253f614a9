package dev.loragateway.gateway;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** Chooses the compute backend in one place and says why. */
final class Backends {
    private static final Logger LOG = LoggerFactory.getLogger(Backends.class);

    private Backends() {
    }

    /** Resolves {@code --backend}: only the CPU backend exists in this build. */
    static String choose(String requested) {
        switch (requested) {
            case "cpu":
                LOG.info("backend cpu (requested)");
                return "cpu";
            case "auto":
                LOG.info("backend cpu (auto: this build has no CUDA backend yet)");
                return "cpu";
            case "cuda":
                throw new IllegalArgumentException("--backend cuda: this build has no CUDA backend yet; use --backend cpu");
            default:
                throw new IllegalArgumentException("--backend must be auto, cpu or cuda, got '" + requested + "'");
        }
    }
}
