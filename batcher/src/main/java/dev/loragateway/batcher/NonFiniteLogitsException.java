package dev.loragateway.batcher;

/**
 * A row of logits has no token to choose: every value is NaN or -∞, so there is no distribution
 * (softmax would be 0/0). The model computed garbage for that sequence, e.g. an adapter whose
 * weights overflow float32; the engine fails that sequence alone and the others in its batch go
 * on. The message is written for the caller and names no server detail.
 */
public final class NonFiniteLogitsException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public NonFiniteLogitsException(int vocab) {
        super("the model produced no finite logit for the next token (all " + vocab + " are NaN or -infinity); the"
            + " computation overflowed, for example through an adapter whose weights are out of range");
    }
}
