package dev.loragateway.gateway.cli;

import dev.loragateway.gateway.demo.DemoAdapters;
import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.kernels.DType;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code demo-model}: writes the demo model (or a larger generated one) and its adapters as a Hugging Face directory. */
@Command(name = "demo-model", mixinStandardHelpOptions = true,
    description = "Write the embedded demo model and 4 demo PEFT adapters (under adapters/) as a Hugging Face directory.")
final class DemoModelCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "Output directory.")
    Path out;

    @Option(names = "--hidden-size", description = "Hidden size (default: the demo model's).")
    Integer hidden;

    @Option(names = "--intermediate-size", description = "MLP size (default: the demo model's).")
    Integer intermediate;

    @Option(names = "--layers", description = "Decoder layers (default: the demo model's).")
    Integer layers;

    @Option(names = "--heads", description = "Attention heads (default: the demo model's).")
    Integer heads;

    @Option(names = "--kv-heads", description = "Key/value heads (default: the demo model's).")
    Integer kvHeads;

    @Option(names = "--vocab-size", description = "Vocabulary size (default: the demo model's).")
    Integer vocab;

    @Option(names = "--dtype", description = "float32, float16 or bfloat16 (default: float32).")
    String dtype;

    @Option(names = "--seed", description = "Random seed (default: the demo model's).")
    Long seed;

    @Option(names = "--extra-adapters", paramLabel = "N", defaultValue = "0",
        description = "Also write N more random PEFT adapters (all seven projections) as adapters/extra-<i>, e.g. for load tests that upload thousands (default: ${DEFAULT-VALUE}).")
    int extraAdapters;

    @Option(names = "--extra-rank", paramLabel = "R", defaultValue = "8", description = "Rank of the --extra-adapters (default: ${DEFAULT-VALUE}).")
    int extraRank;

    @Override
    public Integer call() throws Exception {
        DemoModel.Options o = options(spec, hidden, intermediate, layers, heads, kvHeads, vocab, dtype, seed);
        if (extraAdapters < 0 || extraAdapters > 100_000) {
            throw new ParameterException(spec.commandLine(), "--extra-adapters must be 0 to 100000, got " + extraAdapters);
        }
        if (extraRank < 1 || extraRank > Math.min(o.hiddenSize(), 1024)) {
            throw new ParameterException(spec.commandLine(), "--extra-rank must be 1 to " + Math.min(o.hiddenSize(), 1024) + ", got " + extraRank);
        }
        DemoModel.write(out, o);
        for (int i = 0; i < extraAdapters; i++) {
            DemoAdapters.writeRandom(out.resolve("adapters"), o,
                new DemoAdapters.Spec("extra-" + i, extraRank, 2 * extraRank, DemoAdapters.ALL_MODULES, false), o.seed() + 1 + i);
        }
        System.out.println("wrote model to " + out + " (hidden " + o.hiddenSize() + ", " + o.layers() + " layers, vocab "
            + o.vocabSize() + ", " + o.dtype() + ") with adapters in " + out.resolve("adapters")
            + (extraAdapters > 0 ? " (" + extraAdapters + " extra, rank " + extraRank + ")" : ""));
        return 0;
    }

    static DemoModel.Options options(CommandSpec spec, Integer hidden, Integer intermediate, Integer layers, Integer heads,
                                     Integer kvHeads, Integer vocab, String dtype, Long seed) {
        DemoModel.Options t = DemoModel.Options.tiny();
        try {
            return new DemoModel.Options(
                hidden != null ? hidden : t.hiddenSize(),
                intermediate != null ? intermediate : t.intermediateSize(),
                layers != null ? layers : t.layers(),
                heads != null ? heads : t.heads(),
                kvHeads != null ? kvHeads : (heads != null ? heads : t.kvHeads()),
                vocab != null ? vocab : t.vocabSize(),
                dtype != null ? DType.parse(dtype) : t.dtype(),
                seed != null ? seed : t.seed());
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), e.getMessage());
        }
    }
}
