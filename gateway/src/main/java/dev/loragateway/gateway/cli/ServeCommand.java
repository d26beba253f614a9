package dev.loragateway.gateway.cli;

import dev.loragateway.adapters.AdapterCatalog;
import dev.loragateway.adapters.AdapterInfo;
import dev.loragateway.adapters.AdapterKey;
import dev.loragateway.adapters.AdapterRegistry;
import dev.loragateway.adapters.AdapterTiers;
import dev.loragateway.adapters.DeviceTier;
import dev.loragateway.batcher.CpuForwardBackend;
import dev.loragateway.batcher.Engine;
import dev.loragateway.batcher.ForwardBackend;
import dev.loragateway.batcher.KvBlockPool;
import dev.loragateway.batcher.cuda.CudaForwardBackend;
import dev.loragateway.gateway.auth.Tenants;
import dev.loragateway.batcher.InferenceExecutor;
import dev.loragateway.gateway.cluster.AdapterFiles;
import dev.loragateway.gateway.cluster.ClusterAdapters;
import dev.loragateway.gateway.cluster.ClusterExecutor;
import dev.loragateway.gateway.cluster.ClusterTenantLimits;
import dev.loragateway.gateway.cluster.Hops;
import dev.loragateway.gateway.cluster.InternalApi;
import dev.loragateway.gateway.cluster.LocalNodeState;
import dev.loragateway.gateway.cluster.RemoteExecutors;
import dev.loragateway.scheduler.placement.Placements;
import dev.loragateway.scheduler.cluster.ClusterMember;
import dev.loragateway.scheduler.cluster.ClusterOptions;
import dev.loragateway.scheduler.cluster.quota.TenantQuotas;
import dev.loragateway.batcher.LlamaModel;
import dev.loragateway.batcher.LocalExecutor;
import dev.loragateway.gateway.demo.DemoCache;
import dev.loragateway.gateway.demo.DemoModel;
import dev.loragateway.gateway.http.ApiServer;
import dev.loragateway.gateway.http.HttpLimits;
import dev.loragateway.gateway.telemetry.Telemetry;
import dev.loragateway.gateway.telemetry.VllmMetrics;
import dev.loragateway.gateway.text.TextTokenizer;
import dev.loragateway.kernels.cpu.CpuBackend;
import dev.loragateway.kernels.cuda.CudaContext;
import dev.loragateway.kernels.cuda.CudaDevice;
import dev.loragateway.kernels.cuda.CudaOps;
import io.vertx.core.Vertx;
import java.nio.file.Files;
import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code serve}: loads a model and serves the OpenAI-compatible HTTP API. */
@Command(name = "serve", mixinStandardHelpOptions = true, description = "Serve the OpenAI-compatible HTTP API.")
final class ServeCommand implements Callable<Integer> {
    private static final Logger LOG = LoggerFactory.getLogger(ServeCommand.class);

    @Spec
    CommandSpec spec;

    @Option(names = "--model", paramLabel = "DIR", description = "Hugging Face model directory (default: the embedded demo model).")
    Path model;

    @Option(names = "--model-id", paramLabel = "NAME", description = "Id of the base model in the API (default: the directory's name, 'demo' for the demo model).")
    String modelId;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Listen address (default: ${DEFAULT-VALUE}).")
    String host;

    @Option(names = "--port", defaultValue = "8000", description = "Listen port; 0 picks a free one (default: ${DEFAULT-VALUE}).")
    int port;

    @Option(names = "--data-dir", defaultValue = "./lora-data", paramLabel = "DIR", description = "Where uploaded adapters are kept (default: ${DEFAULT-VALUE}).")
    Path dataDir;

    @Option(names = "--api-keys", paramLabel = "FILE", description = "JSON file of tenants and their keys (default: auth off).")
    Path apiKeys;

    @Option(names = "--backend", defaultValue = "auto", description = "auto, cpu or cuda (default: ${DEFAULT-VALUE}).")
    String backend;

    @Option(names = "--cpu-kernels", paramLabel = "auto|native|java", defaultValue = "auto",
        description = "CPU backend: kernels of bf16 matmuls: native (AVX-512 BF16, where this CPU and build have it; activations rounded "
            + "to bf16 as llama.cpp does), java (Vector API, float32 activations) or auto (native where available; default: ${DEFAULT-VALUE}).")
    String cpuKernels;

    @Option(names = "--lora-modules", paramLabel = "NAME=DIR,...", split = ",", description = "Adapters loaded at start, visible to every tenant.")
    java.util.List<String> loraModules;

    @Option(names = "--allow-runtime-lora-updating",
        description = "Serve vLLM's POST /v1/load_lora_adapter and /v1/unload_lora_adapter (with --api-keys: operator keys only, and "
            + "--allowed-lora-dir alone turns them on; single node only).")
    boolean allowRuntimeLoraUpdating;

    @Option(names = "--allowed-lora-dir", paramLabel = "DIR", split = ",",
        description = "A directory /v1/load_lora_adapter may load adapters from (repeat it or separate with commas; default: none).")
    java.util.List<Path> allowedLoraDirs;

    /**
     * Whether vLLM's runtime LoRA routes are served: with {@code --allow-runtime-lora-updating}, or
     * with {@code --api-keys} and an {@code --allowed-lora-dir} (operator keys are the admins then).
     */
    private boolean runtimeLoraRoutes() {
        return allowRuntimeLoraUpdating || (apiKeys != null && allowedLoraDirs != null);
    }

    @Option(names = "--max-lora-rank", defaultValue = "64", description = "Largest adapter rank accepted (default: ${DEFAULT-VALUE}).")
    int maxLoraRank;

    @Option(names = "--max-batch", defaultValue = "32", description = "Most sequences in one running batch (default: ${DEFAULT-VALUE}).")
    int maxBatch;

    @Option(names = "--max-model-len", description = "Longest prompt + completion (default: the model's max_position_embeddings).")
    Integer maxModelLen;

    @Option(names = "--kv-cache-mb", description = "KV-cache pool in MB (default: sized from free memory).")
    Integer kvCacheMb;

    @Option(names = "--max-num-batched-tokens", defaultValue = "512",
        description = "Most tokens in one forward step: every running decode, then prompt chunks up to this (default: ${DEFAULT-VALUE}).")
    int maxNumBatchedTokens;

    @Option(names = "--enable-prefix-caching", negatable = true, defaultValue = "true", fallbackValue = "true",
        description = "Automatic prefix caching: full KV blocks are kept and reused by later prompts of the same tenant and adapter "
            + "that start with the same tokens; --no-enable-prefix-caching turns it off (default: on).")
    boolean enablePrefixCaching;

    @Option(names = "--max-queued", defaultValue = "1024", description = "Sequences (a request's prompts × n) waiting beyond the running batch; a request that does not fit now"
        + " gets 429, one with more than this alone 400 (default: ${DEFAULT-VALUE}).")
    int maxQueued;

    @Option(names = "--gpu-adapter-slots", defaultValue = "64", description = "Adapters resident on the device at once (default: ${DEFAULT-VALUE}).")
    int gpuAdapterSlots;

    @Option(names = "--adapter-slot-mb", description = "Byte budget of the adapter slots (the hot tier) in MB (default: a quarter of the JVM heap).")
    Integer adapterSlotMb;

    @Option(names = "--host-cache-mb", defaultValue = "1024", description = "Host-memory adapter cache in MB (default: ${DEFAULT-VALUE}).")
    int hostCacheMb;

    @Option(names = "--max-adapter-mb", defaultValue = "512", description = "Largest adapter upload in MB (default: ${DEFAULT-VALUE}).")
    int maxAdapterMb;

    @Option(names = "--idle-timeout-s", defaultValue = "" + HttpLimits.DEFAULT_IDLE_TIMEOUT_S,
        description = "Close a keep-alive connection idle this long (no request in flight), and a response whose client reads nothing "
            + "for this long; a stream waiting for tokens is not idle (default: ${DEFAULT-VALUE}).")
    int idleTimeoutS;

    @Option(names = "--header-timeout-s", defaultValue = "" + HttpLimits.DEFAULT_HEADER_TIMEOUT_S,
        description = "A request head must arrive within this (from the connection's accept, or from a later head's first byte); "
            + "else 408 and the connection closes (default: ${DEFAULT-VALUE}).")
    int headerTimeoutS;

    @Option(names = "--body-timeout-s", defaultValue = "" + HttpLimits.DEFAULT_BODY_TIMEOUT_S,
        description = "Longest silence while a request body arrives; then 408 and the connection closes (an upload's staging is "
            + "removed) (default: ${DEFAULT-VALUE}).")
    int bodyTimeoutS;

    @Option(names = "--max-connections", paramLabel = "N",
        description = "Connections held at once; past it a newcomer closes the oldest idle one, or when all serve requests gets "
            + "/health and /metrics only on a few more, else 503 (default: " + HttpLimits.DEFAULT_MAX_CONNECTIONS
            + ", lowered to fit the open-file limit).")
    Integer maxConnections;

    @Option(names = "--cluster-name", paramLabel = "NAME",
        description = "Join a cluster of gateways of this name (an embedded Hazelcast member; default: no cluster, nothing starts).")
    String clusterName;

    @Option(names = "--cluster-members", split = ",", paramLabel = "HOST:PORT,...",
        description = "Cluster members to contact, each HOST:PORT (TCP-IP join; a first node may list itself).")
    java.util.List<String> clusterMembers;

    @Option(names = "--cluster-port", paramLabel = "N", description = "This node's Hazelcast member port (default: 5701).")
    Integer clusterPort;

    @Option(names = "--cluster-host", paramLabel = "ADDR", description = "Address the cluster member binds (default: --host).")
    String clusterHost;

    @Option(names = "--cluster-secret-file", paramLabel = "FILE",
        description = "Shared secret of the members and of the internal listener between nodes (required unless every address is loopback).")
    Path clusterSecretFile;

    @Option(names = "--node-id", paramLabel = "ID", description = "This node's name in /v1/cluster, logs and metrics (default: host:port).")
    String nodeId;

    @Option(names = "--placement", defaultValue = "consolidate", paramLabel = "POLICY",
        description = "How the cluster places requests: consolidate, least-loaded, round-robin or adapter-affinity (default: ${DEFAULT-VALUE}).")
    String placement;

    @Option(names = "--record-steps", paramLabel = "FILE",
        description = "Diagnostics: write every engine step (decode rows, prompt tokens, distinct adapters, positions attended, "
            + "wall ms) to FILE as CSV, for 'bench profile --from-steps FILE': the simulator's profile of this node as it serves.")
    Path recordSteps;

    @Option(names = "--watchdog-s", defaultValue = "60",
        description = "GET /health answers 503 when work waits and no engine step has finished for this many seconds, "
            + "or at once when the engine has stopped (default: ${DEFAULT-VALUE}).")
    int watchdogSeconds;

    @Option(names = "--metrics-port", paramLabel = "N",
        description = "Also serve GET /metrics with every tenant label, without a key, on this port of --metrics-host; 0 picks"
            + " a free one (default: none; the API port's /metrics shows tenant labels only to operator_keys when auth is on).")
    Integer metricsPort;

    @Option(names = "--metrics-host", defaultValue = "127.0.0.1", paramLabel = "ADDR",
        description = "Listen address of --metrics-port (default: ${DEFAULT-VALUE}).")
    String metricsHost;

    @Option(names = "--otlp-endpoint", paramLabel = "URL",
        description = "Also push traces and metrics over OTLP/HTTP (protobuf) to this base URL, e.g. http://localhost:4318 "
            + "(/v1/traces and /v1/metrics are appended).")
    String otlpEndpoint;

    @Override
    public Integer call() throws Exception {
        validate();
        CpuKernelChoice.apply(spec, cpuKernels);
        Backends.Choice chosen; // first: a --backend that cannot run here fails before the model loads
        try {
            chosen = Backends.choose(backend);
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), e.getMessage());
        }
        Telemetry telemetry;
        try {
            telemetry = Telemetry.builder().otlpEndpoint(otlpEndpoint).build();
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), "--otlp-endpoint: " + e.getMessage());
        }
        if (otlpEndpoint != null) {
            LOG.info("telemetry: Prometheus text on /metrics; traces and metrics pushed over OTLP/HTTP to {}", otlpEndpoint);
        }
        try {
            return serve(telemetry, chosen.backend());
        } catch (Exception | Error e) {
            telemetry.close();
            throw e;
        }
    }

    /** Fails when the KV cache cannot hold one sequence of an explicit --max-model-len, or not even one block. */
    private void checkKvHolds(long kvPositions, long kvBytes, long perBlock, int limit, int blockSize) {
        if (kvPositions >= limit) {
            return;
        }
        if (maxModelLen != null) {
            throw new ParameterException(spec.commandLine(), "the KV cache (" + (kvBytes >> 20) + " MB, " + kvPositions
                + " positions) cannot hold one sequence of --max-model-len " + limit + "; raise --kv-cache-mb or lower --max-model-len");
        }
        if (kvPositions < blockSize) {
            throw new ParameterException(spec.commandLine(), "--kv-cache-mb " + kvCacheMb + " holds less than one KV block ("
                + perBlock + " bytes)");
        }
    }

    /** Where the engine's steps run: the CPU's threads, or the CUDA device (opened here). */
    private static ForwardBackend forwardBackend(String chosen) {
        if (chosen.equals("cuda")) {
            return new CudaForwardBackend(new CudaOps(CudaContext.open(CudaDevice.probe(), CudaContext.Options.defaults())));
        }
        CpuBackend cpu = CpuBackend.create();
        LOG.info("CPU backend: {} threads, bf16 matmuls on the {} kernels ({})", cpu.threads(), cpu.usesNative() ? "native" : "Vector API", dev.loragateway.kernels.cpu.NativeCpu.describe());
        return new CpuForwardBackend(cpu);
    }

    private Integer serve(Telemetry telemetry, String chosen) throws Exception {
        Tenants tenants;
        try {
            tenants = apiKeys == null ? Tenants.open() : Tenants.load(apiKeys);
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), "--api-keys: " + e.getMessage());
        }
        Path dir = model != null ? model : DemoCache.demo();
        String id = modelId != null ? modelId : (model != null ? dir.toAbsolutePath().normalize().getFileName().toString() : DemoModel.MODEL_ID);
        if (!Files.isDirectory(dir)) {
            throw new ParameterException(spec.commandLine(), "--model " + dir + " is not a directory");
        }
        LlamaModel llama;
        try {
            llama = LlamaModel.load(dir);
        } catch (RuntimeException | java.io.IOException e) {
            throw new ParameterException(spec.commandLine(), "cannot load model from " + dir + ": " + e.getMessage());
        }
        int limit = maxModelLen != null ? maxModelLen : llama.config().maxPositionEmbeddings();
        AdapterRegistry registry = adapters(llama, id); // first: a bad --lora-modules fails before threads start
        TextTokenizer tokenizer = TextTokenizer.load(dir);
        LOG.info("model {} from {}: {} layers, hidden {}, {} MB of weights; backend {}", id, dir,
            llama.config().numLayers(), llama.config().hiddenSize(), llama.weightBytes() >> 20, chosen);
        long slotBudget = adapterSlotMb != null ? adapterSlotMb * (1L << 20) : Runtime.getRuntime().maxMemory() / 4;
        // in a cluster, a host-cache miss asks the cluster's catalog, which may first fetch the files from another node
        java.util.concurrent.atomic.AtomicReference<ClusterAdapters> clustered = new java.util.concurrent.atomic.AtomicReference<>();
        AdapterTiers tiers = AdapterTiers.of(registry, gpuAdapterSlots, slotBudget, hostCacheMb * (1L << 20), AdapterTiers.loaderThread(),
            key -> clustered.get() != null ? clustered.get().materialize(key) : registry.get(key));
        DeviceTier<AdapterKey> device = tiers.device();
        telemetry.adapterTiers(tiers.host(), device);
        LOG.info("adapters: {} registered; slots {} with {} MB, host cache {} MB", registry.list("default").size(),
            gpuAdapterSlots, slotBudget >> 20, hostCacheMb);
        int blockSize = 16;
        long perBlock = KvBlockPool.bytesPerBlock(llama.config(), blockSize);
        // 0: the backend sizes the KV cache (max batch x max model length, within its memory: Engine.Options.kvBytes)
        long kvBytes = kvCacheMb != null ? kvCacheMb * (1L << 20) : 0;
        if (kvBytes > 0) { // taken as it is, on either backend
            checkKvHolds(kvBytes / perBlock * blockSize, kvBytes, perBlock, limit, blockSize);
        }
        Engine.Options options = Engine.Options.builder().maxBatch(maxBatch).maxQueued(maxQueued).kvCacheBytes(kvBytes)
            .blockSize(blockSize).maxModelLen(limit).maxStepTokens(maxNumBatchedTokens)
            .meter(telemetry.meter()).tracer(telemetry.tracer()).prefixCaching(enablePrefixCaching).build();
        ForwardBackend forward = forwardBackend(chosen);
        Engine engine = new Engine(llama, forward, device, options);
        long kvPositions = (long) engine.kvBlocksTotal() * blockSize;
        if (kvPositions < limit) {
            try {
                checkKvHolds(kvPositions, kvPositions / blockSize * perBlock, perBlock, limit, blockSize);
            } catch (ParameterException e) {
                engine.close();
                throw e;
            }
            LOG.warn("max model length lowered from {} to {}: the KV cache holds no more (raise --kv-cache-mb{})", limit, kvPositions,
                chosen.equals("cuda") ? "" : " or the heap");
            limit = (int) kvPositions;
        }
        String failed = SelfCheck.run(engine, registry, chosen);
        if (failed != null) {
            System.err.println("lora-gateway: " + failed);
            LOG.error("{}", failed);
            engine.close();
            telemetry.close();
            return SelfCheck.EXIT_CODE;
        }
        if (recordSteps != null) {
            try {
                StepRecorder.attach(engine, recordSteps);
            } catch (IOException e) {
                engine.close();
                telemetry.close();
                throw new ParameterException(spec.commandLine(), "--record-steps " + recordSteps + ": " + e.getMessage());
            }
        }
        LOG.info("KV cache: {} blocks of {} positions, {} MB{}; max model length {}; steps of up to {} tokens; prefix caching {}",
            engine.kvBlocksTotal(), blockSize, engine.kvBlocksTotal() * perBlock >> 20, chosen.equals("cuda") ? " on the device" : "", limit,
            maxNumBatchedTokens, engine.prefixCaching() ? "on" : "off");
        telemetry.vllm(VllmMetrics.of(engine, id, gpuAdapterSlots)); // this node's engine, under vLLM's metric names
        Vertx vertx = Vertx.vertx();
        InferenceExecutor local = new LocalExecutor(engine);
        InferenceExecutor executor = local;
        ClusterMember member = null;
        InternalApi internal = null;
        RemoteExecutors remotes = null;
        ClusterTenantLimits clusterLimits = null;
        AdapterCatalog catalog = registry;
        java.util.concurrent.atomic.AtomicReference<ApiServer> api = new java.util.concurrent.atomic.AtomicReference<>();
        if (clusterName != null) {
            // the node id defaults to the API's host:port (with --port 0 not known yet: the cluster port's)
            String node = nodeId != null ? nodeId : host + ":" + (port != 0 ? port : (clusterPort != null ? clusterPort : ClusterOptions.DEFAULT_PORT));
            String bindHost = clusterHost != null ? clusterHost : host;
            try {
                ClusterOptions co = ClusterOptions.parse(clusterName, String.join(",", clusterMembers), clusterPort, bindHost,
                    clusterSecretFile, node);
                byte[] secret = co.readSecret();
                // other nodes' forwarded requests arrive here (cluster secret required), on a free port of the member's address
                // (a span per forwarded request on this node, under the front node's traceparent),
                // and other nodes pull copies of this node's adapters there
                AdapterFiles files = new AdapterFiles(vertx, registry, node, secret, maxAdapterMb * (1L << 20));
                internal = new InternalApi(vertx, Hops.serving(local, node, telemetry.tracer()), secret).mount(files::routes);
                String address = "http://" + (bindHost.contains(":") ? "[" + bindHost + "]" : bindHost) + ":"
                    + internal.listen(bindHost, 0).await();
                member = ClusterMember.start(co, new LocalNodeState(node, () -> address, chosen, engine, device, tiers.host(),
                    () -> api.get() != null && api.get().draining()));
                ClusterMember joinedAs = member;
                // a forwarded choice that would be preempted here for KV goes back to its front node when another node has room
                internal.moveOnKvShortage(() -> joinedAs.nodes().stream().anyMatch(n -> !n.nodeId().equals(node) && !n.draining()
                    && n.freeBatchSlots() > 0 && n.freeKvBlocks() > 0));
                // uploaded adapters are cluster data: this node's copies join the cluster's records before it serves
                ClusterAdapters adapters = new ClusterAdapters(registry, member, address, files, device::invalidate,
                    ClusterAdapters.DEFAULT_REPLICA_TIMEOUT);
                adapters.rejoin();
                clustered.set(adapters);
                catalog = adapters;
                remotes = new RemoteExecutors(llama.config(), secret, 64);
                // each request names the node that ran it (access log); a forward is a span of its own
                executor = new ClusterExecutor(Hops.ranHere(local, node), member, Placements.byName(placement),
                    Hops.forwarding(remotes, member, telemetry.tracer()), maxQueued);
                clusterLimits = new ClusterTenantLimits(new TenantQuotas(member.hazelcast()), ClusterTenantLimits.DEFAULT_BOUND);
                LOG.info("cluster {}: node {} joined, {} member(s) now; internal listener {}; placement {}", clusterName, node,
                    member.nodes().size(), address, placement);
            } catch (Exception e) { // bad options, an unreadable secret, a taken port or node id
                if (member != null) {
                    member.close();
                }
                vertx.close();
                engine.close();
                throw new ParameterException(spec.commandLine(), "cluster: " + e.getMessage());
            }
            engine.onAdmitOrFinish(member::publishNow); // as well as every 200 ms
            ClusterMember m = member;
            ClusterExecutor cx = (ClusterExecutor) executor;
            telemetry.cluster(m::nodes, cx::forwarded, cx::migrated, cx::waiting);
        }
        ApiServer server = new ApiServer(vertx, executor, tokenizer, id, limit, catalog).tenants(tenants).deviceTier(device)
            .maxAdapterBytes(maxAdapterMb * (1L << 20)).watchdog(java.time.Duration.ofSeconds(watchdogSeconds)).observer(telemetry.requests()).metrics(telemetry::scrape, telemetry::scrapeTenantFree).tracer(telemetry.tracer())
            .httpLimits(httpLimits());
        if (member != null) {
            server.cluster(member, placement).limiter(clusterLimits); // tenant limits hold for the whole cluster
        }
        if (runtimeLoraRoutes()) {
            try {
                server.runtimeLoraUpdating(allowedLoraDirs != null ? allowedLoraDirs : java.util.List.of());
            } catch (IllegalArgumentException e) {
                vertx.close();
                engine.close();
                throw new ParameterException(spec.commandLine(), e.getMessage());
            }
            LOG.info("runtime LoRA updating on: POST /v1/load_lora_adapter loads from {}", allowedLoraDirs != null ? allowedLoraDirs
                : "no directory (add --allowed-lora-dir)");
        }
        api.set(server);
        int bound;
        try {
            bound = server.listen(host, port).await();
        } catch (Exception e) {
            vertx.close();
            throw new ParameterException(spec.commandLine(), "cannot listen on " + host + ":" + port + ": " + e.getMessage());
        }
        if (metricsPort != null) {
            try {
                LOG.info("metrics with every label on http://{}:{}/metrics", metricsHost, server.listenMetrics(metricsHost, metricsPort).await());
            } catch (Exception e) {
                vertx.close();
                throw new ParameterException(spec.commandLine(), "--metrics-port: cannot listen on " + metricsHost + ":" + metricsPort
                    + ": " + e.getMessage());
            }
        }
        ClusterMember joined = member;
        RemoteExecutors forwardedTo = remotes;
        InternalApi internalApi = internal;
        InferenceExecutor routed = executor;
        // SIGTERM: stop taking work at once, on the signal thread, then drain through the shutdown hook
        Signals.onTerm(() -> {
            server.refuseNewWork();
            if (joined != null) {
                joined.publishNow(); // the others see it draining and place nothing more here
                // other nodes' requests running here go back to their front nodes, which resume them elsewhere
                int moved = internalApi.drain();
                LOG.info("draining: {} forwarded choice(s) given back to their front nodes", moved);
            }
            Thread exit = new Thread(() -> System.exit(0), "sigterm");
            exit.start();
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            LOG.info("draining: new requests get 503, running ones finish");
            server.drain();
            if (joined != null) {
                joined.close(); // the others drop this node now; nothing more is forwarded here
            }
            if (forwardedTo != null) {
                forwardedTo.close();
            }
            if (routed instanceof ClusterExecutor cx) {
                cx.close();
            }
            engine.close();
            vertx.close().await();
            telemetry.close(); // pushes the spans and metrics still buffered
            System.out.flush();
            Runtime.getRuntime().halt(0); // a completed drain is a clean exit, not the JVM's 143 for SIGTERM
        }, "drain"));
        System.out.println("lora-gateway listening on http://" + host + ":" + bound + " (model " + id + ", backend " + chosen + ")");
        System.out.flush();
        Thread.currentThread().join();
        return 0;
    }

    private void validate() {
        var cl = spec.commandLine();
        if (port < 0 || port > 65535) {
            throw new ParameterException(cl, "--port must be between 0 and 65535, got " + port);
        }
        if (metricsPort != null && (metricsPort < 0 || metricsPort > 65535)) {
            throw new ParameterException(cl, "--metrics-port must be between 0 and 65535, got " + metricsPort);
        }
        if (maxModelLen != null && maxModelLen < 1) {
            throw new ParameterException(cl, "--max-model-len must be at least 1, got " + maxModelLen);
        }
        positive("--max-lora-rank", maxLoraRank);
        positive("--max-batch", maxBatch);
        positive("--max-queued", maxQueued);
        positive("--watchdog-s", watchdogSeconds);
        positive("--max-num-batched-tokens", maxNumBatchedTokens);
        positive("--gpu-adapter-slots", gpuAdapterSlots);
        positive("--host-cache-mb", hostCacheMb);
        positive("--max-adapter-mb", maxAdapterMb);
        positive("--idle-timeout-s", idleTimeoutS);
        positive("--header-timeout-s", headerTimeoutS);
        positive("--body-timeout-s", bodyTimeoutS);
        if (maxConnections != null) {
            positive("--max-connections", maxConnections);
        }
        if (kvCacheMb != null) {
            positive("--kv-cache-mb", kvCacheMb);
        }
        if (!backend.equals("auto") && !backend.equals("cpu") && !backend.equals("cuda")) {
            throw new ParameterException(cl, "--backend must be auto, cpu or cuda, got '" + backend + "'");
        }
        if (loraModules != null) {
            for (String m : loraModules) {
                int eq = m.indexOf('=');
                if (eq <= 0 || eq == m.length() - 1) {
                    throw new ParameterException(cl, "--lora-modules entries are NAME=DIR, got '" + m + "'");
                }
            }
        }
        if (adapterSlotMb != null) {
            positive("--adapter-slot-mb", adapterSlotMb);
        }
        if (allowedLoraDirs != null && !allowRuntimeLoraUpdating && apiKeys == null) {
            throw new ParameterException(cl, "--allowed-lora-dir needs --allow-runtime-lora-updating (auth is off: anyone who reaches "
                + "the port may then load adapters) or --api-keys (its operator keys may then load them)");
        }
        if (runtimeLoraRoutes() && clusterName != null) {
            throw new ParameterException(cl, (allowRuntimeLoraUpdating ? "--allow-runtime-lora-updating" : "--allowed-lora-dir")
                + " is for a single node, not with --cluster-name: an adapter "
                + "loaded on one node would be missing on the others; give every node the same --lora-modules, or upload with POST /v1/adapters");
        }
        if (allowedLoraDirs != null) {
            for (Path d : allowedLoraDirs) {
                if (!Files.isDirectory(d)) {
                    throw new ParameterException(cl, "--allowed-lora-dir " + d + " is not a directory");
                }
            }
        }
        try {
            dev.loragateway.scheduler.placement.Placements.byName(placement);
        } catch (IllegalArgumentException e) {
            throw new ParameterException(cl, "--placement: " + e.getMessage());
        }
        if (clusterName == null && (clusterMembers != null || clusterPort != null || clusterSecretFile != null || clusterHost != null)) {
            throw new ParameterException(cl, "--cluster-members, --cluster-port, --cluster-host and --cluster-secret-file need --cluster-name");
        }
        if (clusterName != null && (clusterMembers == null || clusterMembers.isEmpty())) {
            throw new ParameterException(cl, "--cluster-name needs --cluster-members HOST:PORT,... (a first node may list itself)");
        }
    }

    /**
     * The HTTP timeouts and connection cap. A default cap that, with its health-check reserve and
     * room for the process's other files (model, adapters, jars), would pass the open-file limit
     * ({@code ulimit -n}) is lowered to fit; an explicit one is kept, with a warning.
     */
    private HttpLimits httpLimits() {
        int cap = maxConnections != null ? maxConnections : HttpLimits.DEFAULT_MAX_CONNECTIONS;
        long files = java.lang.management.ManagementFactory.getOperatingSystemMXBean()
            instanceof com.sun.management.UnixOperatingSystemMXBean unix ? unix.getMaxFileDescriptorCount() : Long.MAX_VALUE;
        long room = files - OTHER_FILES;
        if (cap + HttpLimits.healthReserve(cap) > room) {
            if (maxConnections == null && room > 2L * HttpLimits.healthReserve(1)) {
                int fit = (int) Math.min(Integer.MAX_VALUE, room * 63 / 64);
                LOG.info("--max-connections lowered from {} to {}: the process may open {} files (ulimit -n)", cap, fit, files);
                cap = fit;
            } else {
                LOG.warn("--max-connections {} (and {} more for health checks) may pass the process's limit of {} open files "
                    + "(ulimit -n): raise the limit or lower --max-connections", cap, HttpLimits.healthReserve(cap), files);
            }
        }
        LOG.info("HTTP: idle timeout {} s, header timeout {} s, body timeout {} s, {} connections (+{} for health checks)",
            idleTimeoutS, headerTimeoutS, bodyTimeoutS, cap, HttpLimits.healthReserve(cap));
        return HttpLimits.of(idleTimeoutS, headerTimeoutS, bodyTimeoutS, cap);
    }

    /** Open files kept free of connections for the process's own use: model shards, adapters, jars, sockets of its own. */
    private static final int OTHER_FILES = 256;

    /**
     * The registry over {@code --data-dir} (reloaded) plus the {@code --lora-modules} adapters;
     * {@code modelId} is the one name no adapter may have.
     */
    private AdapterRegistry adapters(LlamaModel llama, String modelId) {
        AdapterRegistry registry = new AdapterRegistry(dataDir, llama.config().shape(), modelId, maxLoraRank);
        try {
            registry.load();
        } catch (RuntimeException e) {
            throw new ParameterException(spec.commandLine(), "cannot use --data-dir " + dataDir + ": " + e.getMessage());
        }
        if (loraModules != null) {
            for (String m : loraModules) {
                int eq = m.indexOf('=');
                String name = m.substring(0, eq);
                Path dir = Path.of(m.substring(eq + 1));
                try {
                    AdapterInfo info = registry.registerSystem(name, dir);
                    LOG.info("adapter {} from {}: rank {}, targets {}, {} bytes", name, dir, info.rank(), info.targets(), info.bytes());
                } catch (RuntimeException e) {
                    throw new ParameterException(spec.commandLine(), "--lora-modules " + name + "=" + dir + ": " + e.getMessage());
                }
            }
        }
        return registry;
    }

    private void positive(String name, int v) {
        if (v < 1) {
            throw new ParameterException(spec.commandLine(), name + " must be at least 1, got " + v);
        }
    }
}
