package dev.loragateway.kernels.cpu;

import static dev.loragateway.kernels.cpu.MatMul.FS;
import static dev.loragateway.kernels.cpu.MatMul.IS;
import static dev.loragateway.kernels.cpu.MatMul.LE;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;

/**
 * Vector loads straight from the (memory-mapped) buffer viewed as a {@link MemorySegment}, with
 * {@code fromMemorySegment}: the fastest form on Java 22+, where the foreign memory API is final.
 * The handle is the segment over the buffer (no copy).
 *
 * <p>Compiled by a JDK 22+ with {@code --release 22} into the same classes folder as the rest of the
 * module (kernels/pom.xml; the parent pom finds the JDK), so its class file only loads on Java 22+;
 * {@link CpuKernelForm} loads it by name and falls back when it is absent or does not load.
 */
final class SegmentLoads extends WeightLoads {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);

    @Override
    Object open(ByteBuffer w) {
        return MemorySegment.ofBuffer(w);
    }

    @Override
    FloatVector floats(Object w, int byteOffset) {
        return FloatVector.fromMemorySegment(FS, (MemorySegment) w, byteOffset, LE);
    }

    @Override
    IntVector pairs(Object w, int byteOffset) {
        return IntVector.fromMemorySegment(IS, (MemorySegment) w, byteOffset, LE);
    }

    @Override
    float f32(Object w, int byteOffset) {
        return ((MemorySegment) w).get(F32, byteOffset);
    }

    @Override
    short bits16(Object w, int byteOffset) {
        return ((MemorySegment) w).get(U16, byteOffset);
    }
}
