package dev.loragateway.kernels.cuda;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * Just enough of nvcc's fatbin container to check what a build put in it: the entries (kind,
 * architecture, compressed or not) and, for SASS entries (plain ELF), the kernels they define
 * (their {@code .text.<name>} sections).
 *
 * <pre>
 * container: u32 magic 0xBA55ED50 | u16 version | u16 header size | u64 size of the entries
 * entry:     u16 kind (1 PTX, 2 ELF) | u16 | u32 header size | u64 payload size | u32 compressed size
 *            | u32 | u16 minor | u16 major | u32 arch (80, 90) | ... | u64 flags @40; payload after the header
 * </pre>
 */
final class Fatbin {
    static final int MAGIC = 0xBA55ED50;
    static final int KIND_PTX = 1;
    static final int KIND_ELF = 2;

    record Entry(int kind, int arch, boolean compressed, byte[] payload) {
        /** Names of the kernels this ELF defines (empty for PTX). */
        Set<String> kernels() {
            return kind == KIND_ELF && !compressed ? elfTextSections(payload) : Set.of();
        }

        @Override
        public String toString() {
            return (kind == KIND_PTX ? "PTX compute_" : kind == KIND_ELF ? "ELF sm_" : "kind " + kind + " ")
                + arch + (compressed ? " (compressed)" : "") + ", " + payload.length + " bytes";
        }
    }

    private Fatbin() {
    }

    static List<Entry> entries(byte[] data) {
        ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        List<Entry> out = new ArrayList<>();
        int pos = 0;
        while (pos + 16 <= data.length) {
            if (b.getInt(pos) != MAGIC) {
                throw new IllegalArgumentException("no fatbin magic at byte " + pos + ": " + Integer.toHexString(b.getInt(pos)));
            }
            int headerSize = Short.toUnsignedInt(b.getShort(pos + 6));
            long size = b.getLong(pos + 8);
            int e = pos + headerSize;
            int end = Math.toIntExact(pos + headerSize + size);
            while (e < end) {
                int kind = Short.toUnsignedInt(b.getShort(e));
                int entryHeader = b.getInt(e + 4);
                int payloadSize = Math.toIntExact(b.getLong(e + 8));
                int compressedSize = b.getInt(e + 16);
                int arch = b.getInt(e + 28);
                long flags = b.getLong(e + 40);
                boolean compressed = compressedSize != 0 || (flags & 0x8000L) != 0;
                byte[] payload = new byte[payloadSize];
                System.arraycopy(data, e + entryHeader, payload, 0, payloadSize);
                out.add(new Entry(kind, arch, compressed, payload));
                e += entryHeader + payloadSize;
            }
            pos = end;
        }
        return out;
    }

    /** Kernel names from the {@code .text.<name>} section headers of a 64-bit little-endian ELF. */
    static Set<String> elfTextSections(byte[] elf) {
        ByteBuffer b = ByteBuffer.wrap(elf).order(ByteOrder.LITTLE_ENDIAN);
        if (b.getInt(0) != 0x464C457F || elf[4] != 2) {
            throw new IllegalArgumentException("not a 64-bit ELF");
        }
        long shoff = b.getLong(0x28);
        int shentsize = Short.toUnsignedInt(b.getShort(0x3A));
        int shnum = Short.toUnsignedInt(b.getShort(0x3C));
        int shstrndx = Short.toUnsignedInt(b.getShort(0x3E));
        int strtab = Math.toIntExact(b.getLong(Math.toIntExact(shoff + (long) shstrndx * shentsize) + 0x18));
        Set<String> names = new TreeSet<>();
        for (int i = 0; i < shnum; i++) {
            int sh = Math.toIntExact(shoff + (long) i * shentsize);
            String name = cString(elf, strtab + b.getInt(sh));
            if (name.startsWith(".text.")) {
                names.add(name.substring(".text.".length()));
            }
        }
        return names;
    }

    private static String cString(byte[] a, int from) {
        int end = from;
        while (end < a.length && a[end] != 0) {
            end++;
        }
        return new String(a, from, end - from, StandardCharsets.US_ASCII);
    }
}
