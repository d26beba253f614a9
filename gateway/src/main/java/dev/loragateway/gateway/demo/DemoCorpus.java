package dev.loragateway.gateway.demo;

/** The English text the demo tokenizer's merges are learned from (original prose, ~3.5 KB). */
final class DemoCorpus {

    private DemoCorpus() {}

    static final String TEXT = """
            The gateway serves one base model and many small adapters. Each adapter is a pair of \
            thin matrices that nudge the model toward a task: answering support questions, writing \
            product descriptions, or translating short notes. Because the adapters are small, the \
            server can keep hundreds of them in memory and load the rest from disk when a request \
            asks for one. Requests for different adapters share the same batch, so the expensive \
            part of the work, the multiplication with the base weights, is done once for everyone.

            When a request arrives, the text of the prompt is split into tokens. A token is often a \
            whole word such as the, and, model or request, but a rare word breaks into smaller \
            pieces, and any character at all can be written as its bytes. The model reads the \
            tokens and predicts the next one, again and again, until it writes the end of the turn \
            or reaches the limit the caller set. The server sends the new text back as soon as it \
            is ready, one small piece at a time, and the client joins the pieces together.

            A good tokenizer learns its pieces from real text. It starts with the two hundred and \
            fifty six possible bytes and then looks for the pair of neighbours that appears most \
            often. That pair becomes a new token, the text is rewritten with it, and the search \
            begins again. After a few hundred rounds the common words of the language are single \
            tokens, while names, numbers and words from other languages are spelled out from \
            smaller parts. The same rules run in the same order every time, so the same text \
            always gives the same tokens.

            Scheduling is the other half of the story. The scheduler keeps a queue of waiting \
            requests and a running batch. At every step it decides which requests may join the \
            batch, taking care that the memory for their keys and values is available and that \
            the adapters they need are resident on the device. When the queue is full the server \
            answers with a polite refusal and a hint about when to try again, rather than letting \
            every request become slow.

            Tenants upload their own adapters and give them names. The names of one tenant are \
            invisible to another, and a request that names an adapter it does not own is told that \
            the model does not exist. Every upload is checked before it is accepted: the shapes \
            must fit the base model, the values must be finite, and the rank must not exceed the \
            limit of the server. Nothing half written is ever left behind.

            Operators watch the numbers: the time to the first token, the time between tokens, the \
            size of each batch, the depth of the queue, and how often an adapter was found in the \
            fast tier, the warm tier, or on disk. When the numbers drift, they look at the traces, \
            which show where each request spent its time, from the moment it was received to the \
            moment its last token was sent. Then they change one setting, measure again, and \
            write down what they learned, so that the next person does not have to learn it again.

            Hello, world! Hello again, world. The quick brown fox jumps over the lazy dog. \
            Numbers like 1, 2, 3, 10, 42, 100 and 2024 appear in the text too, as do questions? \
            Yes: "quotes", (brackets), lists; dashes - and the occasional apostrophe, it's true.
            """;
}
