package dev.loragateway.bench.gpu;

import dev.loragateway.kernels.cuda.CudaDevice;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/**
 * The GPU bench without the gateway ({@code kernels/gpu-check.sh bench}, whose pack carries the
 * kernels, batcher and bench modules and no gateway): the same options as {@code lora-gateway bench gpu}.
 * Exit status 0, or 2 for a usage error or no usable device.
 */
@Command(name = "gpu-bench", mixinStandardHelpOptions = true,
    description = "SGMV latency vs distinct adapters, batch-1 GEMV bandwidth vs a device copy, decode throughput (needs the CUDA forward pass).")
public final class GpuBenchMain implements Callable<Integer> {
    @Mixin
    GpuBenchOptions options;

    @Spec
    CommandSpec spec;

    public static void main(String[] args) {
        System.exit(new CommandLine(new GpuBenchMain()).execute(args));
    }

    @Override
    public Integer call() {
        GpuBenchConfig config;
        try {
            config = options.resolve();
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), e.getMessage(), e);
        }
        CommandLine cl = spec.commandLine();
        return GpuBench.run(config, CudaDevice.probe(), cl.getOut(), cl.getErr());
    }
}
