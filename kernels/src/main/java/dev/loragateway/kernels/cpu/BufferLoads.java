package dev.loragateway.kernels.cpu;

import static dev.loragateway.kernels.cpu.MatMul.FS;
import static dev.loragateway.kernels.cpu.MatMul.IS;
import static dev.loragateway.kernels.cpu.MatMul.LE;

import java.nio.ByteBuffer;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;

/**
 * Vector loads straight from the (memory-mapped) buffer with {@code fromByteBuffer}: the fastest
 * form on Java 17–19, where the method exists (it is gone from Java 20 on). The handle is the
 * buffer itself.
 */
final class BufferLoads extends WeightLoads {
    @Override
    Object open(ByteBuffer w) {
        return w;
    }

    @Override
    FloatVector floats(Object w, int byteOffset) {
        return FloatVector.fromByteBuffer(FS, (ByteBuffer) w, byteOffset, LE);
    }

    @Override
    IntVector pairs(Object w, int byteOffset) {
        return IntVector.fromByteBuffer(IS, (ByteBuffer) w, byteOffset, LE);
    }

    @Override
    float f32(Object w, int byteOffset) {
        return ((ByteBuffer) w).getFloat(byteOffset);
    }

    @Override
    short bits16(Object w, int byteOffset) {
        return ((ByteBuffer) w).getShort(byteOffset);
    }
}
