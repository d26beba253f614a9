package dev.loragateway.scheduler.cluster;

import java.io.IOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * The cluster flags of {@code serve}: {@code --cluster-name NAME --cluster-members HOST:PORT,...
 * [--cluster-port N] [--cluster-secret-file FILE] [--node-id ID]}, plus the host this node binds
 * (the server's {@code --host}). A value of this record is valid: the constructor refuses anything
 * {@link ClusterMember} could not start from, with a message naming the flag and the bad value.
 *
 * <p>The secret is required unless every listed member and this node's bind host are loopback
 * addresses (a cluster that cannot be reached from another machine). Only IP literals and
 * {@code localhost} count as loopback: a host name is never resolved here, so validation makes no
 * DNS query and an unknown name is treated as reachable from outside.
 *
 * @param name       the cluster's name ({@code --cluster-name}); members of other names never join
 * @param members    the members to join, each host and port ({@code --cluster-members}); this node may
 *                   be among them
 * @param bindHost   the address this member binds ({@code 0.0.0.0} or {@code ::} binds every interface)
 * @param port       the member's port ({@code --cluster-port}, default {@value #DEFAULT_PORT}; no
 *                   auto-increment: a taken port is an error, not a silent neighbour)
 * @param secretFile file holding the cluster secret ({@code --cluster-secret-file}), or null
 * @param nodeId     this node's name ({@code --node-id}; default {@code bindHost:port})
 */
public record ClusterOptions(String name, List<Member> members, String bindHost, int port, Path secretFile,
                             String nodeId) {

    public static final int DEFAULT_PORT = 5701;
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,63}");
    private static final Pattern NODE_ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._:\\[\\]-]{0,127}");

    /** One member to join: a host (name or IP literal, IPv6 without brackets) and a port. */
    public record Member(String host, int port) {
        public Member {
            Objects.requireNonNull(host, "host");
            if (host.isBlank()) {
                throw new IllegalArgumentException("--cluster-members: empty host");
            }
            checkPort("--cluster-members", host + ":" + port, port);
        }

        /**
         * Parses {@code HOST:PORT} ({@code [v6]:PORT} for IPv6). Port ranges ({@code h:5701-5703}) are
         * refused: Hazelcast's TCP-IP join fails on them in this form (STACK.md), so each member is listed.
         */
        public static Member parse(String text) {
            String s = text.strip();
            String host;
            String portText;
            if (s.startsWith("[")) {
                int close = s.indexOf(']');
                if (close < 0 || close + 1 >= s.length() || s.charAt(close + 1) != ':') {
                    throw new IllegalArgumentException("--cluster-members: '" + text
                        + "' is not [IPV6]:PORT");
                }
                host = s.substring(1, close);
                portText = s.substring(close + 2);
            } else {
                int colon = s.lastIndexOf(':');
                if (colon < 0) {
                    throw new IllegalArgumentException("--cluster-members: '" + text
                        + "' has no port; expected HOST:PORT");
                }
                if (s.indexOf(':') != colon) {
                    throw new IllegalArgumentException("--cluster-members: '" + text
                        + "' is ambiguous; write an IPv6 member as [ADDRESS]:PORT");
                }
                host = s.substring(0, colon);
                portText = s.substring(colon + 1);
            }
            if (host.isBlank()) {
                throw new IllegalArgumentException("--cluster-members: '" + text + "' has no host; expected HOST:PORT");
            }
            if (portText.matches("\\d+\\s*-\\s*\\d+")) {
                throw new IllegalArgumentException("--cluster-members: '" + text + "' is a port range; list each "
                    + "member as HOST:PORT, one by one (e.g. " + host + ":5701," + host + ":5702)");
            }
            if (!portText.matches("\\d{1,5}")) {
                throw new IllegalArgumentException("--cluster-members: '" + text + "' has port '" + portText
                    + "'; expected a number 1..65535");
            }
            return new Member(host, Integer.parseInt(portText));
        }

        /** {@code host:port} as Hazelcast's TCP-IP member list takes it ({@code [v6]:port} for IPv6). */
        @Override
        public String toString() {
            return (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
        }
    }

    public ClusterOptions {
        Objects.requireNonNull(name, "--cluster-name");
        if (!NAME.matcher(name).matches()) {
            throw new IllegalArgumentException("--cluster-name '" + name
                + "': expected 1 to 64 of letters, digits, '.', '_', '-' (starting with a letter or digit)");
        }
        Objects.requireNonNull(members, "--cluster-members");
        if (members.isEmpty()) {
            throw new IllegalArgumentException("--cluster-members: at least one HOST:PORT is required "
                + "(a first node may list itself)");
        }
        members = List.copyOf(members);
        Objects.requireNonNull(bindHost, "bind host");
        if (bindHost.isBlank()) {
            throw new IllegalArgumentException("bind host is empty");
        }
        checkPort("--cluster-port", String.valueOf(port), port);
        if (nodeId == null || nodeId.isBlank()) {
            nodeId = (bindHost.indexOf(':') >= 0 ? "[" + bindHost + "]" : bindHost) + ":" + port;
        }
        if (!NODE_ID.matcher(nodeId).matches()) {
            throw new IllegalArgumentException("--node-id '" + nodeId
                + "': expected 1 to 128 of letters, digits, '.', '_', '-', ':', '[', ']'");
        }
        if (secretFile == null) {
            List<String> outside = new ArrayList<>();
            if (!isLoopback(bindHost)) {
                outside.add("bind host " + bindHost);
            }
            for (Member m : members) {
                if (!isLoopback(m.host())) {
                    outside.add("member " + m);
                }
            }
            if (!outside.isEmpty()) {
                throw new IllegalArgumentException("--cluster-secret-file is required unless every member and the "
                    + "bind host are loopback addresses; not loopback: " + String.join(", ", outside));
            }
        }
    }

    /**
     * Parses the flags as typed: {@code members} is the comma-separated list; a null {@code port} is
     * {@value #DEFAULT_PORT}, a null {@code bindHost} {@code 127.0.0.1}, a null {@code nodeId}
     * {@code bindHost:port}.
     */
    public static ClusterOptions parse(String name, String members, Integer port, String bindHost, Path secretFile,
                                       String nodeId) {
        Objects.requireNonNull(members, "--cluster-members");
        List<Member> list = Arrays.stream(members.split(","))
            .filter(s -> !s.isBlank())
            .map(Member::parse)
            .toList();
        return new ClusterOptions(name, list, bindHost == null ? "127.0.0.1" : bindHost,
            port == null ? DEFAULT_PORT : port, secretFile, nodeId);
    }

    /** True when the secret may be absent: the whole cluster lives on loopback addresses. */
    public boolean loopbackOnly() {
        return isLoopback(bindHost) && members.stream().allMatch(m -> isLoopback(m.host()));
    }

    /**
     * Reads the secret: the file's bytes with trailing whitespace (a final newline) removed; an
     * empty array when no file is given. A named file that cannot be read or holds nothing is an
     * error (a typo must not silently make the cluster open).
     */
    public byte[] readSecret() {
        if (secretFile == null) {
            return new byte[0];
        }
        byte[] raw;
        try {
            raw = Files.readAllBytes(secretFile);
        } catch (IOException e) {
            throw new IllegalArgumentException("--cluster-secret-file " + secretFile + ": cannot read ("
                + e.getClass().getSimpleName() + ": " + e.getMessage() + ")", e);
        }
        int end = raw.length;
        while (end > 0 && Character.isWhitespace(raw[end - 1])) {
            end--;
        }
        if (end == 0) {
            throw new IllegalArgumentException("--cluster-secret-file " + secretFile + " is empty");
        }
        return Arrays.copyOf(raw, end);
    }

    /** Loopback by literal only: {@code localhost}, 127.0.0.0/8, ::1. Never resolves a name. */
    static boolean isLoopback(String host) {
        if (host.equalsIgnoreCase("localhost")) {
            return true;
        }
        if (host.matches("\\d{1,3}(\\.\\d{1,3}){3}")) {
            String[] octets = host.split("\\.");
            for (String o : octets) {
                if (Integer.parseInt(o) > 255) {
                    return false;
                }
            }
            return Integer.parseInt(octets[0]) == 127;
        }
        if (host.indexOf(':') < 0 || !host.matches("[0-9A-Fa-f:.]+")) {
            return false;
        }
        try {
            return InetAddress.getByName(host).isLoopbackAddress(); // an IPv6 literal: parsed, never looked up
        } catch (UnknownHostException e) {
            return false;
        }
    }

    private static void checkPort(String flag, String text, int port) {
        if (port < 1 || port > 65535) {
            throw new IllegalArgumentException(flag + " '" + text + "': port " + port + " is outside 1..65535");
        }
    }
}
