package dev.loragateway.gateway.cli;

import dev.loragateway.kernels.cuda.CudaDevice;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Chooses the compute backend in one place and says why.
 *
 * <p>{@code cpu} never touches CUDA. {@code auto} and {@code cuda} ask {@link CudaDevice#probe()}
 * (once per process; tens of milliseconds without a driver): {@code auto} runs on a usable device
 * and falls back to the CPU, logging why; {@code cuda} is refused where no device is usable.
 */
final class Backends {
    private static final Logger LOG = LoggerFactory.getLogger(Backends.class);

    /** The backend to run, {@code "cpu"} or {@code "cuda"}, and the reason, as logged. */
    record Choice(String backend, String why) {
        @Override
        public String toString() {
            return "backend " + backend + " (" + why + ")";
        }
    }

    private Backends() {
    }

    /**
     * Resolves {@code --backend} against this machine's probe.
     *
     * @throws IllegalArgumentException when the value is not auto, cpu or cuda, or cuda cannot run
     *     here; the message says why (the caller turns it into a usage error)
     */
    static Choice choose(String requested) {
        return choose(requested, CudaDevice::probe);
    }

    /** As {@link #choose(String)} over any probe (tests). */
    static Choice choose(String requested, Supplier<CudaDevice.Probe> probe) {
        Choice choice = decide(requested, probe);
        LOG.info("{}", choice);
        return choice;
    }

    private static Choice decide(String requested, Supplier<CudaDevice.Probe> probes) {
        switch (requested) {
            case "cpu":
                return new Choice("cpu", "requested");
            case "auto": {
                CudaDevice.Probe probe = probes.get();
                if (!probe.usable()) {
                    return new Choice("cpu", "auto: CUDA not usable: " + probe.reason());
                }
                return new Choice("cuda", "auto: CUDA device " + probe.describe());
            }
            case "cuda": {
                CudaDevice.Probe probe = probes.get();
                if (!probe.usable()) {
                    throw new IllegalArgumentException("--backend cuda: CUDA is not usable here: " + probe.reason()
                        + "; use --backend cpu or auto");
                }
                return new Choice("cuda", "requested: CUDA device " + probe.describe());
            }
            default:
                throw new IllegalArgumentException("--backend must be auto, cpu or cuda, got '" + requested + "'");
        }
    }
}
