package dev.loragateway.scheduler.workload;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

class WorkloadTest {

    private static Workload w(String... kv) {
        Map<String, String> m = new HashMap<>();
        for (int i = 0; i < kv.length; i += 2) m.put(kv[i], kv[i + 1]);
        return Workload.of(m);
    }

    @Test
    void sameDescriptionSameTraceAndOptionsRoundTrip() {
        Workload a = w("tenants", "7", "adapters-per-tenant", "3", "popularity", "zipf:1.2", "seed", "42",
            "prompt-len", "lognormal:100:0.8:400", "arrivals", "ramp:1:10", "rate", "9");
        assertEquals(a.trace(500), Workload.of(a.options()).trace(500));
        assertNotEquals(a.trace(50), w("tenants", "7", "adapters-per-tenant", "3", "popularity", "zipf:1.2", "seed", "43").trace(50));
    }

    @Test
    void zipfFrequenciesFollowOneOverRankToTheAlpha() {
        double alpha = 1.5;
        Workload wl = w("tenants", "10", "adapters-per-tenant", "5", "popularity", "zipf:" + alpha, "seed", "5");
        int n = 200_000;
        Map<String, Integer> counts = new HashMap<>();
        for (TraceRequest r : wl.trace(n)) {
            counts.merge(r.adapter(), 1, Integer::sum);
            assertTrue(r.adapter().startsWith(r.tenant() + "-a"), r.toString());
        }
        List<Integer> sorted = counts.values().stream().sorted((x, y) -> y - x).toList();
        double h = 0;
        for (int k = 1; k <= 50; k++) h += Math.pow(k, -alpha);
        for (int k = 1; k <= 5; k++) {
            double expected = n * Math.pow(k, -alpha) / h;
            assertEquals(expected, sorted.get(k - 1), 5 * Math.sqrt(expected) + 1, "rank " + k);
        }
        // the most popular adapters are not all one tenant's
        Set<String> topTenants = new HashSet<>();
        counts.entrySet().stream().sorted((x, y) -> y.getValue() - x.getValue()).limit(5)
            .forEach(e -> topTenants.add(e.getKey().substring(0, e.getKey().indexOf('-'))));
        assertTrue(topTenants.size() > 1, topTenants.toString());
    }

    @Test
    void popularityClassesSplitTheTraffic() {
        List<TraceRequest> t = w("tenants", "20", "adapters-per-tenant", "10", "popularity", "zipf:1.1").trace(50_000);
        long hot = t.stream().filter(r -> r.popularity().equals("hot")).count();
        long cold = t.stream().filter(r -> r.popularity().equals("cold")).count();
        assertTrue(hot > 0.45 * t.size() && hot < 0.65 * t.size(), "hot " + hot);
        assertTrue(cold > 0.03 * t.size() && cold < 0.15 * t.size(), "cold " + cold);
    }

    @Test
    void distinctCyclesIdenticalSticksAndBaseModelHasNoAdapter() {
        List<TraceRequest> d = w("tenants", "3", "adapters-per-tenant", "2", "popularity", "distinct").trace(12);
        assertEquals(6, new HashSet<>(d.subList(0, 6).stream().map(TraceRequest::adapter).toList()).size());
        assertEquals(d.get(0).adapter(), d.get(6).adapter());
        assertEquals(1, w("tenants", "3", "adapters-per-tenant", "4", "popularity", "identical").trace(100).stream()
            .map(TraceRequest::adapter).distinct().count());
        List<TraceRequest> base = w("tenants", "5", "adapters-per-tenant", "0").trace(200);
        assertTrue(base.stream().allMatch(r -> r.adapter() == null));
        assertEquals(5, base.stream().map(TraceRequest::tenant).distinct().count());
    }

    @Test
    void arrivalsHaveTheirRate() {
        double rate = 25;
        List<TraceRequest> p = w("arrivals", "poisson", "rate", "" + rate, "seed", "9").trace(20_000);
        double span = p.get(p.size() - 1).arrivalSeconds();
        assertEquals(20_000 / rate, span, 0.03 * 20_000 / rate);
        for (int i = 1; i < p.size(); i++) assertTrue(p.get(i).arrivalSeconds() >= p.get(i - 1).arrivalSeconds());
        List<TraceRequest> c = w("arrivals", "constant", "rate", "4").trace(9);
        assertEquals(2.0, c.get(8).arrivalSeconds(), 1e-12);
        // ramp 2 → 10 over 20 s: 2·20 + 8·20/2 = 120 arrivals in the ramp, then 10/s
        List<TraceRequest> r = w("arrivals", "ramp:2:20", "rate", "10").trace(221);
        assertEquals(20.0, r.get(120).arrivalSeconds(), 1e-9);
        assertEquals(30.0, r.get(220).arrivalSeconds(), 1e-9);
        assertEquals(0.0, r.get(0).arrivalSeconds(), 1e-12);
        long firstTen = r.stream().filter(x -> x.arrivalSeconds() < 10).count(); // 2·10 + 0.4·100/2 = 40
        assertEquals(40, firstTen, 1);
    }

    @Test
    void lengthsHaveTheirMeansAndBounds() {
        var rnd = new java.util.SplittableRandom(3);
        Lengths ln = Lengths.parse("lognormal:161:1.0");
        double sum = 0;
        int n = 400_000;
        for (int i = 0; i < n; i++) sum += ln.sample(rnd);
        assertEquals(161, sum / n, 3);
        Lengths clipped = Lengths.parse("sharegpt-output:100");
        for (int i = 0; i < 10_000; i++) {
            int v = clipped.sample(rnd);
            assertTrue(v >= 1 && v <= 100, "" + v);
        }
        Lengths u = Lengths.parse("uniform:3:5");
        Set<Integer> seen = new HashSet<>();
        for (int i = 0; i < 1000; i++) seen.add(u.sample(rnd));
        assertEquals(Set.of(3, 4, 5), seen);
        assertEquals(ln, Lengths.parse(ln.spec()));
    }

    @Test
    void badOptionsNameTheProblem() {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> w("popularity", "zipf")).getMessage().contains("zipf:ALPHA"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> w("prompt-len", "gauss:3")).getMessage().contains("gauss:3"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> w("rate", "0")).getMessage().contains("rate"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> w("tenant", "3")).getMessage().contains("'tenant'"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> w("output-len", "uniform:9:2")).getMessage().contains("MIN <= MAX"));
    }

    @Test
    void jsonLinesRoundTripAndBadLinesNameTheirNumber(@TempDir Path dir) throws Exception {
        List<TraceRequest> t = w("tenants", "2", "adapters-per-tenant", "1", "seed", "4").trace(30);
        List<TraceRequest> withBase = new java.util.ArrayList<>(t);
        withBase.add(new TraceRequest(99, "t1", null, 5, 6, null));
        StringWriter sw = new StringWriter();
        Traces.write(withBase, sw);
        Path f = dir.resolve("trace.jsonl");
        Files.writeString(f, sw.toString());
        assertEquals(withBase, Traces.read(f));
        Files.writeString(f, "{\"arrival_s\":0,\"tenant\":\"a\",\"prompt_tokens\":3,\"output_tokens\":2}\n\n{\"arrival_s\":1,\"tenant\":\"a\",\"prompt_tokens\":0,\"output_tokens\":2}\n");
        String msg = assertThrows(IllegalArgumentException.class, () -> Traces.read(f)).getMessage();
        assertTrue(msg.contains("line 3") && msg.contains("prompt_tokens"), msg);
    }
}
