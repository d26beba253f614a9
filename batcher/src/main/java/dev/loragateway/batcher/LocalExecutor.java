package dev.loragateway.batcher;

import io.opentelemetry.context.Scope;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/** Runs requests on this process's {@link Engine}: each {@link InferenceExecutor.Work} as one {@link Engine#submitAll}. */
public final class LocalExecutor implements InferenceExecutor {
    private final Engine engine;

    public LocalExecutor(Engine engine) {
        this.engine = engine;
    }

    /** The engine requests run on. */
    public Engine engine() {
        return engine;
    }

    @Override
    public List<List<CompletableFuture<Generator.Finish>>> submit(Work work) {
        List<Engine.Prompt> prompts = new ArrayList<>(work.prompts().size());
        for (Prompt p : work.prompts()) {
            List<Engine.Choice> choices = new ArrayList<>(p.choices().size());
            for (Choice c : p.choices()) {
                choices.add(new Engine.Choice(c.params(), c.sink()));
            }
            prompts.add(new Engine.Prompt(p.tokens(), choices));
        }
        // the engine's spans take the caller's current context as their parent
        try (Scope scope = work.trace() == null ? null : work.trace().makeCurrent()) {
            return engine.submitAll(prompts, work.adapter(), work.tenant());
        }
    }

    @Override
    public ModelConfig config() {
        return engine.model().config();
    }

    @Override
    public String unhealthy(long stallNanos) {
        return engine.unhealthy(stallNanos);
    }
}
