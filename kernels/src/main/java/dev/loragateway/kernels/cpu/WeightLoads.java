package dev.loragateway.kernels.cpu;

import java.nio.ByteBuffer;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;

/**
 * How the CPU matmul kernels read a weight tensor's little-endian bytes: whole vectors in the hot
 * loops, single elements in the scalar tails. One stateless instance per {@link CpuKernelForm}.
 *
 * <p>The Vector API's loads from off-heap memory changed across Java versions
 * ({@code fromByteBuffer} on 17–19, {@code fromMemorySegment} from 20, a preview API until 21), and
 * a kernel compiled against one links on the others and fails only at its first call. So the
 * kernels ({@link MatMul}, {@link MatMulBatched} and its generated register blocks) are written
 * once against this class and take it as a parameter, with the handle {@link #open} made of the
 * weights: {@link BufferLoads} (the buffer itself), {@code SegmentLoads} (a {@code MemorySegment}
 * over it; compiled by a JDK 22+, see kernels/pom.xml) or {@link CopyLoads} (the buffer and a
 * scratch array). Offsets are bytes from the tensor's first element.
 *
 * <p>Only the chosen form's subclass is loaded in a server, so C2 binds these calls statically
 * (class hierarchy analysis) and inlines them into the register-block kernels: each method is one
 * line, well under the inlining limits those large methods hit (checked with
 * {@code -XX:+LogCompilation} on Java 17 and 25). The form and the handle are two parameters, not
 * one per-call object holding the buffer: measured on Java 17 against the direct
 * {@code fromByteBuffer} calls they replace (two builds in one JVM, interleaved, 1 thread, AVX-512),
 * such an object cost 5–10% in the batched kernels; the two parameters leave BF16 within about
 * ±3% (noise on the shared machine), F32 GEMV about 8% faster and the batched F32 kernels 3–5% slower.
 */
abstract class WeightLoads {
    /**
     * The handle the loads of one kernel call on one thread read: {@code w} (little-endian,
     * position 0) or a view of it. Never a copy of the weights.
     */
    abstract Object open(ByteBuffer w);

    /** {@code L} float32 weights starting at {@code byteOffset}. */
    abstract FloatVector floats(Object w, int byteOffset);

    /**
     * {@code L} int lanes starting at {@code byteOffset}, each holding two adjacent 16-bit weights
     * (the even one in the low half), as {@link MatMul} widens them.
     */
    abstract IntVector pairs(Object w, int byteOffset);

    /** The float32 weight at {@code byteOffset}. */
    abstract float f32(Object w, int byteOffset);

    /** The bits of the 16-bit weight at {@code byteOffset}. */
    abstract short bits16(Object w, int byteOffset);
}
