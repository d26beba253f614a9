package dev.loragateway.scheduler.workload;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.SplittableRandom;

/**
 * One description of traffic, shared by the Gatling simulations ({@code load-tests/}) and the
 * cluster simulator, so both run the same load: T tenants with A adapters each (A = 0: the base
 * model only), the adapters' popularity, prompt and output lengths, open-model arrivals at a rate,
 * and a seed. {@link #trace()} turns it into requests, the same ones for the same description.
 *
 * <p>Names: tenant {@code t<i>}, its adapters {@code t<i>-a<j>} (i, j from 0).
 */
public record Workload(int tenants, int adaptersPerTenant, Popularity popularity, Lengths promptLengths,
                       Lengths outputLengths, Arrivals arrivals, double rate, long seed) {

    /** Defaults of every option (the simulator's and the simulations'). */
    public static final Map<String, String> DEFAULTS;

    static {
        Map<String, String> d = new LinkedHashMap<>();
        d.put("tenants", "4");
        d.put("adapters-per-tenant", "2");
        d.put("popularity", "uniform");
        d.put("prompt-len", "uniform:16:64");
        d.put("output-len", "uniform:8:32");
        d.put("arrivals", "poisson");
        d.put("rate", "4");
        d.put("seed", "1");
        DEFAULTS = Map.copyOf(d);
    }

    public Workload {
        if (tenants < 1) throw new IllegalArgumentException("tenants must be at least 1, got " + tenants);
        if (adaptersPerTenant < 0) throw new IllegalArgumentException("adapters-per-tenant must be >= 0, got " + adaptersPerTenant);
        if ((long) tenants * adaptersPerTenant > 10_000_000)
            throw new IllegalArgumentException("tenants × adapters-per-tenant must be at most 10,000,000");
        if (!(rate > 0) || !Double.isFinite(rate)) throw new IllegalArgumentException("rate must be > 0 requests/s, got " + rate);
    }

    /**
     * A workload from option values by name ({@link #DEFAULTS}' keys; a missing one takes its default).
     *
     * @throws IllegalArgumentException naming the option and the bad value
     */
    public static Workload of(Map<String, String> options) {
        for (String k : options.keySet())
            if (!DEFAULTS.containsKey(k)) throw new IllegalArgumentException("unknown workload option '" + k + "' (known: " + String.join(", ", DEFAULTS.keySet()) + ")");
        java.util.function.Function<String, String> v = k -> options.getOrDefault(k, DEFAULTS.get(k));
        try {
            return new Workload(Integer.parseInt(v.apply("tenants").trim()),
                Integer.parseInt(v.apply("adapters-per-tenant").trim()),
                Popularity.parse(v.apply("popularity")), Lengths.parse(v.apply("prompt-len")),
                Lengths.parse(v.apply("output-len")), Arrivals.parse(v.apply("arrivals")),
                Double.parseDouble(v.apply("rate").trim()), Long.parseLong(v.apply("seed").trim()));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("workload: not a number: " + e.getMessage());
        }
    }

    /** The option values that give this workload back through {@link #of}. */
    public Map<String, String> options() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("tenants", Integer.toString(tenants));
        m.put("adapters-per-tenant", Integer.toString(adaptersPerTenant));
        m.put("popularity", popularity.spec());
        m.put("prompt-len", promptLengths.spec());
        m.put("output-len", outputLengths.spec());
        m.put("arrivals", arrivals.spec());
        m.put("rate", Double.toString(rate));
        m.put("seed", Long.toString(seed));
        return m;
    }

    public Workload withRate(double newRate) {
        return new Workload(tenants, adaptersPerTenant, popularity, promptLengths, outputLengths, arrivals, newRate, seed);
    }

    public static String tenantName(int i) { return "t" + i; }

    public static String adapterName(int tenant, int adapter) { return "t" + tenant + "-a" + adapter; }

    /** Every adapter's name, tenant by tenant. */
    public List<String> adapterNames() {
        List<String> names = new ArrayList<>(tenants * adaptersPerTenant);
        for (int t = 0; t < tenants; t++)
            for (int a = 0; a < adaptersPerTenant; a++) names.add(adapterName(t, a));
        return names;
    }

    /** An endless trace (arrival times ascending); take as many requests as you need. */
    public Iterator<TraceRequest> trace() {
        return new Generator();
    }

    /** The first {@code count} requests of {@link #trace()}. */
    public List<TraceRequest> trace(int count) {
        List<TraceRequest> out = new ArrayList<>(count);
        Iterator<TraceRequest> it = trace();
        for (int i = 0; i < count; i++) out.add(it.next());
        return out;
    }

    private final class Generator implements Iterator<TraceRequest> {
        private final SplittableRandom arrivalRnd = new SplittableRandom(seed);
        private final SplittableRandom pickRnd = new SplittableRandom(seed * 31 + 7);
        private final SplittableRandom lengthRnd = new SplittableRandom(seed * 131 + 11);
        private final int adapters = tenants * adaptersPerTenant;
        /** rank → adapter index (a seeded shuffle), for zipf. */
        private final int[] byRank;
        /** cumulative weight by rank, for zipf. */
        private final double[] cdf;
        /** rank below which an adapter is hot, warm. */
        private final int hotRanks;
        private final int warmRanks;
        private final int identical;
        private long index;
        private double last;

        Generator() {
            SplittableRandom shuffle = new SplittableRandom(seed * 17 + 3);
            identical = adapters == 0 ? 0 : shuffle.nextInt(adapters);
            if (popularity.kind() == Popularity.Kind.ZIPF && adapters > 0) {
                byRank = new int[adapters];
                for (int i = 0; i < adapters; i++) byRank[i] = i;
                for (int i = adapters - 1; i > 0; i--) {
                    int j = shuffle.nextInt(i + 1);
                    int tmp = byRank[i]; byRank[i] = byRank[j]; byRank[j] = tmp;
                }
                cdf = new double[adapters];
                double sum = 0;
                for (int k = 0; k < adapters; k++) cdf[k] = sum += 1.0 / Math.pow(k + 1, popularity.alpha());
                for (int k = 0; k < adapters; k++) cdf[k] /= sum;
                int h = 0;
                while (h < adapters - 1 && cdf[h] < 0.5) h++;
                int w = h;
                while (w < adapters - 1 && cdf[w] < 0.9) w++;
                hotRanks = h + 1;
                warmRanks = w + 1;
            } else {
                byRank = null;
                cdf = null;
                hotRanks = warmRanks = 0;
            }
        }

        public boolean hasNext() { return true; }

        public TraceRequest next() {
            if (index == Long.MAX_VALUE) throw new NoSuchElementException();
            double t = Math.max(last, arrivals.next(last, rate, arrivalRnd, index));
            last = t;
            String tenant;
            String adapter = null;
            String cls = "even";
            if (adapters == 0) {
                int ti = popularity.kind() == Popularity.Kind.DISTINCT ? (int) (index % tenants)
                    : popularity.kind() == Popularity.Kind.IDENTICAL ? 0 : pickRnd.nextInt(tenants);
                tenant = tenantName(ti);
            } else {
                int a;
                switch (popularity.kind()) {
                    case DISTINCT -> a = (int) (index % adapters);
                    case UNIFORM -> a = pickRnd.nextInt(adapters);
                    case IDENTICAL -> { a = identical; cls = "hot"; }
                    default -> {
                        double u = pickRnd.nextDouble();
                        int rank = Arrays.binarySearch(cdf, u);
                        if (rank < 0) rank = -rank - 1;
                        rank = Math.min(rank, adapters - 1);
                        a = byRank[rank];
                        cls = rank < hotRanks ? "hot" : rank < warmRanks ? "warm" : "cold";
                    }
                }
                int ti = a / adaptersPerTenant;
                tenant = tenantName(ti);
                adapter = adapterName(ti, a % adaptersPerTenant);
            }
            int prompt = promptLengths.sample(lengthRnd);
            int output = outputLengths.sample(lengthRnd);
            index++;
            return new TraceRequest(t, tenant, adapter, prompt, output, cls);
        }
    }
}
