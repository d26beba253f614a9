package dev.loragateway.scheduler;

/**
 * What placement knows of a request before it runs: whose it is, which adapter it needs and how
 * much room it takes (KV positions and batch slots).
 *
 * @param tenant       the caller's tenant
 * @param adapter      the adapter key ({@code AdapterKey.toString()}), or null for the base model
 * @param promptTokens prompt length (the longest prompt when a request has several)
 * @param maxTokens    the most tokens each choice may generate
 * @param sequences    prompts × n: the batch slots it holds once admitted
 */
public record PlacementRequest(String tenant, String adapter, int promptTokens, int maxTokens, int sequences) {
    /** KV positions one of its sequences may reach. */
    public int positions() {
        return promptTokens + maxTokens;
    }
}
