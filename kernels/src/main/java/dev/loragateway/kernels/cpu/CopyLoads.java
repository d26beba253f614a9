package dev.loragateway.kernels.cpu;

import static dev.loragateway.kernels.cpu.MatMul.IS;

import java.nio.ByteBuffer;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * The portable form, for Java 20–21 (where {@code fromByteBuffer} is gone and
 * {@code fromMemorySegment} is a preview API that a jar built for 17 cannot call) and for Java 22+
 * running a build made without a JDK 22+: each vector's bytes are copied from the buffer into a
 * small heap array owned by the kernel call ({@link Handle}) and loaded with {@code fromArray},
 * which every version has. Bytes reinterpreted as floats or ints are read in little-endian order on
 * any platform, as the weights are stored. Nothing is copied wholesale: one vector at a time.
 */
final class CopyLoads extends WeightLoads {
    /** One weight vector's bytes (the float and int species have the same shape). */
    private static final VectorSpecies<Byte> BS = IS.withLanes(byte.class);

    /** The buffer and the scratch of one kernel call on one thread. */
    private static final class Handle {
        final ByteBuffer w;
        final byte[] scratch = new byte[BS.length()];

        Handle(ByteBuffer w) {
            this.w = w;
        }

        ByteVector load(int byteOffset) {
            w.get(byteOffset, scratch);
            return ByteVector.fromArray(BS, scratch, 0);
        }
    }

    @Override
    Object open(ByteBuffer w) {
        return new Handle(w);
    }

    @Override
    FloatVector floats(Object w, int byteOffset) {
        return ((Handle) w).load(byteOffset).reinterpretAsFloats();
    }

    @Override
    IntVector pairs(Object w, int byteOffset) {
        return ((Handle) w).load(byteOffset).reinterpretAsInts();
    }

    @Override
    float f32(Object w, int byteOffset) {
        return ((Handle) w).w.getFloat(byteOffset);
    }

    @Override
    short bits16(Object w, int byteOffset) {
        return ((Handle) w).w.getShort(byteOffset);
    }
}
