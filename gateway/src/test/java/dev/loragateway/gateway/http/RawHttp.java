package dev.loragateway.gateway.http;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Locale;

/**
 * HTTP/1.1 over a plain socket, for requests that {@link java.net.http.HttpClient} will not send
 * (broken framing, folded or duplicated headers, bodies that stop) and for connections a test
 * holds open: one response read back, its status, head and body (chunked decoded).
 */
final class RawHttp {
    private RawHttp() {
    }

    /** A response: its status (-1 when the server closed without answering), head and body. */
    record Raw(int status, String head, String body) {
        int statusCode() {
            return status;
        }

        @Override
        public String toString() {
            return status + "\n" + head + "\n\n" + body;
        }
    }

    /** Sends {@code request} on a fresh connection to 127.0.0.1:{@code port} and reads one response. */
    static Raw exchange(int port, byte[] request, int timeoutMs) throws IOException {
        try (Socket s = new Socket("127.0.0.1", port)) {
            s.setSoTimeout(timeoutMs);
            s.getOutputStream().write(request);
            s.getOutputStream().flush();
            return read(s);
        }
    }

    /** Reads one response from {@code s} (its SO_TIMEOUT bounds the wait); a reset keeps what arrived before it. */
    static Raw read(Socket s) throws IOException {
        InputStream in = s.getInputStream();
        ByteArrayOutputStream got = new ByteArrayOutputStream();
        byte[] buf = new byte[8192];
        try {
            int k;
            while ((k = in.read(buf)) > 0) {
                got.write(buf, 0, k);
                if (complete(got.toByteArray())) {
                    break;
                }
            }
        } catch (SocketTimeoutException e) {
            throw new AssertionError("no complete response within " + s.getSoTimeout() + " ms; got: " + got.toString(StandardCharsets.UTF_8), e);
        } catch (IOException reset) {
            // the server may reset a connection it refuses; what arrived before counts
        }
        return parse(got.toByteArray());
    }

    /** A request head: the request line, Host, the given header lines and the blank line. */
    static byte[] head(String method, String path, String... headers) {
        StringBuilder sb = new StringBuilder(method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (String h : headers) {
            sb.append(h).append("\r\n");
        }
        return sb.append("\r\n").toString().getBytes(StandardCharsets.US_ASCII);
    }

    static byte[] concat(byte[] a, byte[] b) {
        byte[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    private static boolean complete(byte[] bytes) {
        String s = new String(bytes, StandardCharsets.ISO_8859_1);
        int end = s.indexOf("\r\n\r\n");
        if (end < 0) {
            return false;
        }
        String head = s.substring(0, end).toLowerCase(Locale.ROOT);
        int cl = head.indexOf("\ncontent-length:");
        if (cl < 0) {
            return head.contains("transfer-encoding: chunked") && s.endsWith("0\r\n\r\n");
        }
        int eol = head.indexOf('\n', cl + 1);
        int n = Integer.parseInt(head.substring(cl + 16, eol < 0 ? head.length() : eol).trim());
        return s.length() - end - 4 >= n;
    }

    private static Raw parse(byte[] bytes) {
        String s = new String(bytes, StandardCharsets.ISO_8859_1);
        int end = s.indexOf("\r\n\r\n");
        if (!s.startsWith("HTTP/1.") || end < 0) {
            return new Raw(-1, s, "");
        }
        String head = s.substring(0, end);
        String body = s.substring(end + 4);
        if (head.toLowerCase(Locale.ROOT).contains("transfer-encoding: chunked")) {
            StringBuilder out = new StringBuilder();
            int at = 0;
            while (true) {
                int eol = body.indexOf("\r\n", at);
                int n = Integer.parseInt(body.substring(at, eol).trim(), 16);
                if (n == 0) {
                    break;
                }
                out.append(body, eol + 2, eol + 2 + n);
                at = eol + 2 + n + 2;
            }
            body = out.toString();
        }
        return new Raw(Integer.parseInt(head.substring(9, 12)), head,
            new String(body.getBytes(StandardCharsets.ISO_8859_1), StandardCharsets.UTF_8));
    }
}
