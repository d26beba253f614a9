package dev.loragateway.gateway.cli;

import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.cpu.NativeCpu;
import java.util.Locale;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ParameterException;

/** {@code --cpu-kernels auto|native|java} of serve and the CPU benches, applied to every CPU backend of this process. */
final class CpuKernelChoice {
    private CpuKernelChoice() {
    }

    /**
     * Sets {@code -Dlora.cpu.native} to the choice, which {@link CpuBackend#CpuBackend(int)} reads;
     * {@code native} where the native kernels are not available is a usage error naming why.
     */
    static void apply(CommandSpec spec, CpuBackend.Kernels k) {
        if (k == CpuBackend.Kernels.NATIVE && !NativeCpu.available()) {
            throw new ParameterException(spec.commandLine(), "--cpu-kernels native: " + NativeCpu.describe());
        }
        System.setProperty(NativeCpu.PROPERTY, k.name().toLowerCase(Locale.ROOT));
    }

    /** Parses and applies {@code value}; a bad value is a usage error naming the allowed ones. */
    static CpuBackend.Kernels apply(CommandSpec spec, String value) {
        CpuBackend.Kernels k;
        try {
            k = CpuBackend.Kernels.parse(value);
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), "--cpu-kernels: " + e.getMessage());
        }
        apply(spec, k);
        return k;
    }
}
