package dev.loragateway.scheduler.cluster;

import java.io.IOException;
import java.net.ServerSocket;
import java.util.ArrayList;
import java.util.List;

/** Ports for a cluster of local processes or members ({@code bench cluster}, tests). */
public final class LocalPorts {
    private LocalPorts() {
    }

    /**
     * {@code n} distinct ports free now, below Linux's ephemeral range (32768 and up): a port the
     * kernel hands out as the source of an outgoing connection (Hazelcast members dial each other
     * all the time) would be taken again before the member that was meant to bind it starts.
     */
    public static int[] free(int n) throws IOException {
        int[] ports = new int[n];
        List<ServerSocket> held = new ArrayList<>();
        java.util.Random rnd = new java.util.Random();
        try {
            for (int i = 0; i < n; i++) {
                for (int attempt = 0; ; attempt++) {
                    int p = 20_000 + rnd.nextInt(12_000);
                    try {
                        ServerSocket s = new ServerSocket();
                        s.setReuseAddress(false);
                        s.bind(new java.net.InetSocketAddress("127.0.0.1", p));
                        held.add(s);
                        ports[i] = p;
                        break;
                    } catch (IOException taken) {
                        if (attempt > 200) {
                            throw taken;
                        }
                    }
                }
            }
        } finally {
            for (ServerSocket s : held) {
                s.close();
            }
        }
        return ports;
    }

}
