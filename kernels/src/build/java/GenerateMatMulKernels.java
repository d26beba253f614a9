import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.IntFunction;
import java.util.function.UnaryOperator;

/**
 * Writes the register-block kernels of {@code MatMulBatched}: one class per weight dtype,
 * {@code dev.loragateway.kernels.cpu.MatMul{Bf16,F16,F32}Kernels}, each holding the column-tile
 * driver {@code batched} and six kernels (4, 2 or 1 packed input rows times 4 or 1 weight rows).
 *
 * <p>Run by the kernels build at generate-sources (kernels/pom.xml) as a single-file program on the
 * building JDK: {@code java GenerateMatMulKernels.java <output source root>}, into
 * target/generated-sources/matmul. The output is not committed, so it cannot drift from this file.
 * A file is rewritten only when its text changes (an unchanged build recompiles nothing).
 *
 * <p>Why generated rather than written with helpers: Java 17's C2 neither inlines helpers into
 * methods this large (NodeCountInliningCutoff) nor keeps vectors passed between calls in registers,
 * so each kernel spells out its accumulators and fmas flat. The only calls left in them are the
 * one-line {@code WeightLoads} methods, which C2 does inline.
 *
 * <p>The shape of one kernel, for R rows and C weight rows ({@code a[r][c]} accumulators):
 * <pre>
 * for each block of B inner elements k (B = 2L for 16-bit weights, L for f32):
 *   load the C weight vectors at k (16-bit: one int vector of L pairs each, widened to an even and
 *   an odd float vector); load the R input vectors of the packed panel; a[r][c] += w[c] · x[r]
 * s[r][c] = reduce(a[r][c])   (4x4: one lane-swap tree when L == 16, else reduceLanes)
 * the inner tail (in mod B) scalar; out[r][c] = s[r][c], or += when add (a later k chunk)
 * </pre>
 * The statement order inside the loop differs by shape (the 4x4 block loads all inputs first, the
 * others all weights first): it is the order of the hand-kept kernels this generator replaced, whose
 * text it reproduces exactly (only comments differ), so their measurements still hold.
 */
public final class GenerateMatMulKernels {
    private static final String PKG = "dev.loragateway.kernels.cpu";

    /** One weight dtype: how its kernels load, widen and read a scalar weight. */
    private record Dtype(String className, String prefix, String label, int bytes) {
        boolean sixteenBit() {
            return bytes == 2;
        }

        /** The inner block: one int vector of pairs (2L) for 16-bit weights, one float vector (L) for f32. */
        String block() {
            return sixteenBit() ? "BLOCK16" : "L";
        }

        /** Weight c of the scalar tail. */
        String scalar(int c) {
            String at = "b" + c + " + (k + t) * " + bytes;
            switch (prefix) {
                case "bf16": return "DType.bf16ToFloat(ld.bits16(w, " + at + "))";
                case "f16": return "DType.f16ToFloat(ld.bits16(w, " + at + "))";
                default: return "ld.f32(w, " + at + ")";
            }
        }

        /** The halves of a block: (weight variable, input variable, input offset, weight vector of v). */
        List<Half> halves() {
            List<Half> h = new ArrayList<>();
            switch (prefix) {
                case "bf16":
                    h.add(new Half("e", "ey", "", v -> v + ".lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats()"));
                    h.add(new Half("o", "oy", " + L", v -> v + ".and(0xFFFF0000).reinterpretAsFloats()"));
                    break;
                case "f16": // half → float: exponent+mantissa up 13 bits, the sign on top, times 2^112
                    h.add(new Half("e", "ey", "", v -> v + ".and(F16_EXP_MASK).lanewise(VectorOperators.LSHL, 13).or("
                            + v + ".and(0x8000).lanewise(VectorOperators.LSHL, 16)).reinterpretAsFloats().mul(0x1p112f)"));
                    h.add(new Half("o", "oy", " + L", v -> v + ".lanewise(VectorOperators.LSHR, 3).and(F16_EXP_MASK << 13).or("
                            + v + ".and(0x80000000)).reinterpretAsFloats().mul(0x1p112f)"));
                    break;
                default:
                    h.add(new Half("v", "y", "", null));
                    break;
            }
            return h;
        }
    }

    /**
     * Half of a block: for 16-bit weights the even (low) or odd (high) weight of each int lane, read
     * against the matching half of the packed input; f32 has one half, its weights loaded as floats.
     */
    private record Half(String weight, String input, String offset, UnaryOperator<String> widen) {
    }

    private static final Dtype[] DTYPES = {
        new Dtype("MatMulBf16Kernels", "bf16", "BF16", 2),
        new Dtype("MatMulF16Kernels", "f16", "F16", 2),
        new Dtype("MatMulF32Kernels", "f32", "F32", 4),
    };

    private final StringBuilder out = new StringBuilder();
    private int indent;

    public static void main(String[] args) throws IOException {
        if (args.length != 1) {
            throw new IllegalArgumentException("usage: java GenerateMatMulKernels.java <output source root>");
        }
        Path dir = Path.of(args[0]).resolve(PKG.replace('.', '/'));
        Files.createDirectories(dir);
        for (Dtype d : DTYPES) {
            Path file = dir.resolve(d.className() + ".java");
            String text = generate(d);
            if (!Files.exists(file) || !Files.readString(file, StandardCharsets.UTF_8).equals(text)) {
                Files.writeString(file, text, StandardCharsets.UTF_8);
            }
        }
    }

    /** The source text of {@code d}'s kernel class. */
    private static String generate(Dtype d) {
        GenerateMatMulKernels g = new GenerateMatMulKernels();
        g.file(d);
        return g.out.toString();
    }

    private void line(String s) {
        out.append(s.isEmpty() ? "" : "    ".repeat(indent)).append(s).append('\n');
    }

    private void open(String s) {
        line(s);
        indent++;
    }

    private void close(String s) {
        indent--;
        line(s);
    }

    /** A line that closes one block and opens the next ("} else {"). */
    private void reopen(String s) {
        close(s);
        indent++;
    }

    /** {@code f(i)} for i in [0, n) joined by spaces: one source line of a register block's row. */
    private static String join(int n, IntFunction<String> f) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < n; i++) {
            b.append(i == 0 ? "" : " ").append(f.apply(i));
        }
        return b.toString();
    }

    private void file(Dtype d) {
        line("package " + PKG + ";");
        line("");
        if (d.sixteenBit()) {
            line("import dev.loragateway.kernels.DType;");
            line("");
        }
        line("import static " + PKG + ".MatMul.*;");
        line("import static " + PKG + ".MatMulBatched.*;");
        line("");
        line("import jdk.incubator.vector.FloatVector;");
        if (d.sixteenBit()) {
            line("import jdk.incubator.vector.IntVector;");
        }
        line("import jdk.incubator.vector.VectorOperators;");
        line("");
        line("/**");
        line(" * The " + d.label() + " register-block kernels of {@link MatMulBatched} (4, 2 or 1 input rows");
        line(" * times 4 or 1 weight rows) and their column-tile driver. Generated by");
        line(" * kernels/src/build/java/GenerateMatMulKernels.java during the build: edit that, not this file.");
        line(" * The kernels repeat one pattern and stay flat on purpose: Java 17's C2 does not inline helpers");
        line(" * into methods this large. The weight loads go through {@link WeightLoads} ({@code ld}, {@code w}:");
        line(" * the form chosen for this JVM and its handle), whose one-line methods C2 does inline here");
        line(" * (checked with {@code -XX:+LogCompilation} on Java 17 and 25).");
        line(" */");
        open("final class " + d.className() + " {");
        open("private " + d.className() + "() {");
        close("}");
        driver(d);
        int[][] shapes = {{4, 4}, {4, 1}, {2, 4}, {2, 1}, {1, 4}, {1, 1}};
        for (int[] s : shapes) {
            line("");
            kernel(d, s[0], s[1]);
        }
        close("}");
    }

    private static String kernelName(Dtype d, int rows, int cols) {
        return d.prefix() + "K" + rows + "x" + cols + (rows == 4 && cols == 4 ? "t" : "");
    }

    /** The column-tile and k-chunk walk of {@code MatMulBatched.batched} for this dtype (see its design note). */
    private void driver(Dtype d) {
        int b = d.bytes();
        line("");
        line("/** {@link MatMulBatched#batched} for " + d.label() + " weights. */");
        open("static void batched(WeightLoads ld, Object w, int in, float[] xq, int rows, float[] out, int outStride, int j0, int j1) {");
        line("int rowBytes = in * " + b + ";");
        line("int kc = in <= K_CHUNK + K_CHUNK / 2 ? in : K_CHUNK;");
        line("int tile = Math.max(16, TILE_BYTES / (kc * " + b + ") / 16 * 16);");
        open("for (int t0 = j0; t0 < j1; t0 += tile) {");
        line("int t1 = Math.min(j1, t0 + tile);");
        open("for (int k0 = 0; k0 < in; ) {");
        line("int kn = in - k0 < kc + kc / 2 ? in - k0 : kc; // a short last chunk joins this one");
        line("boolean add = k0 > 0;");
        line("int r = 0;");
        for (int rows : new int[] {4, 2, 1}) {
            open("for (; r + " + rows + " <= rows; r += " + rows + ") {");
            line("int xo = r * in + k0 * " + rows + ";");
            line("int j = t0;");
            String args = "(ld, w, j * rowBytes + k0 * " + b + ", rowBytes, kn, xq, xo, out, r * outStride + j, outStride, add);";
            open("for (; j + 4 <= t1; j += 4) {");
            line(kernelName(d, rows, 4) + args);
            close("}");
            open("for (; j < t1; j++) {");
            line(kernelName(d, rows, 1) + args);
            close("}");
            close("}");
        }
        line("k0 += kn;");
        close("}");
        close("}");
        close("}");
    }

    /** Rows [0, rows) of a panel times weight rows [j, j + cols). */
    private void kernel(Dtype d, int rows, int cols) {
        boolean tree = rows == 4 && cols == 4; // 16 accumulators: reduced together by the lane-swap tree
        String block = d.block();
        line("/** Rows [0, " + rows + ") of the panel at {@code xo} times W rows [j, j + " + cols + ") at byte {@code wo}. */");
        open("static void " + kernelName(d, rows, cols) + "(WeightLoads ld, Object w, int wo, int rowStride, int in, float[] xq, int xo, float[] out, int oo, int outStride, boolean add) {");
        line("int b0 = wo;");
        for (int c = 1; c < cols; c++) {
            line("int b" + c + " = wo + " + c + " * rowStride;");
        }
        for (int r = 0; r < rows; r++) {
            int row = r;
            if (cols == 4) {
                line(join(cols, c -> "FloatVector a" + row + c + " = FloatVector.zero(FS);"));
            } else {
                line("FloatVector a" + r + "0 = FloatVector.zero(FS);");
            }
        }
        line("int full = in - in % " + block + ";");
        line("int p = xo;");
        line("int k = 0;");
        open("for (; k < full; k += " + block + ", p += " + rows + " * " + block + ") {");
        loopBody(d, rows, cols, tree);
        close("}");
        IntFunction<IntFunction<String>> sum = r -> c -> tree ? "s[" + (r * cols + c) + "]" : "s" + r + c;
        if (tree) {
            reduceTree();
        } else {
            for (int r = 0; r < rows; r++) {
                for (int c = 0; c < cols; c++) {
                    line("float s" + r + c + " = a" + r + c + ".reduceLanes(VectorOperators.ADD);");
                }
            }
        }
        open("if (k < in) {");
        line("int tail = in - full;");
        open("for (int t = 0; t < tail; t++) {");
        for (int c = 0; c < cols; c++) {
            line("float w" + c + " = " + d.scalar(c) + ";");
        }
        for (int r = 0; r < rows; r++) {
            int row = r;
            line("float y" + r + " = xq[p + " + r + " * tail + t];");
            line(join(cols, c -> sum.apply(row).apply(c) + " += w" + c + " * y" + row + ";"));
        }
        close("}");
        close("}");
        open("if (add) {");
        stores(rows, cols, "+=", sum);
        reopen("} else {");
        stores(rows, cols, "=", sum);
        close("}");
        close("}");
    }

    private void stores(int rows, int cols, String op, IntFunction<IntFunction<String>> sum) {
        for (int r = 0; r < rows; r++) {
            int row = r;
            line("int o" + r + " = oo" + (r == 0 ? "" : " + " + r + " * outStride") + ";");
            line(join(cols, c -> "out[o" + row + " + " + c + "] " + op + " " + sum.apply(row).apply(c) + ";"));
        }
    }

    private void loopBody(Dtype d, int rows, int cols, boolean tree) {
        String block = d.block();
        if (d.sixteenBit()) {
            for (int c = 0; c < cols; c++) {
                line("IntVector v" + c + " = ld.pairs(w, b" + c + " + k * 2);");
            }
        }
        for (Half h : d.halves()) {
            IntFunction<String> weight = c -> "FloatVector " + h.weight() + c + " = "
                    + (h.widen() == null ? "ld.floats(w, b" + c + " + k * 4)" : h.widen().apply("v" + c)) + ";";
            IntFunction<String> input = r -> "FloatVector " + h.input() + r + " = FloatVector.fromArray(FS, xq, p + " + r + " * " + block + h.offset() + ");";
            if (tree) { // all inputs, then each weight vector against them
                for (int r = 0; r < rows; r++) {
                    line(input.apply(r));
                }
                for (int c = 0; c < cols; c++) {
                    int col = c;
                    line(weight.apply(c));
                    line(join(rows, r -> "a" + r + col + " = " + h.weight() + col + ".fma(" + h.input() + r + ", a" + r + col + ");"));
                }
            } else { // all weights, then each input against them
                for (int c = 0; c < cols; c++) {
                    line(weight.apply(c));
                }
                for (int r = 0; r < rows; r++) {
                    int row = r;
                    line(input.apply(r));
                    line(join(cols, c -> "a" + row + c + " = " + h.weight() + c + ".fma(" + h.input() + row + ", a" + row + c + ");"));
                }
            }
        }
    }

    /**
     * The 16 sums of a 4x4 block into {@code s[r·4 + c]}. With 16 lanes, one tree: a step for lane bit
     * m adds lanes i and i^m of two vectors, keeping the first's sums where bit m of the lane is clear
     * and the second's where it is set (steps for 8, 4, 2, 1); so for lane n = r·4 + c
     * (bits n3 n2 n1 n0) the t8 input is {@code t8_[4·n0 + 2·n1 + n2]}, of rows n2 (first) and n2 + 2
     * (second) at column 2·n1 + n0. Narrower vectors (AVX2: 8 lanes) reduce each accumulator.
     */
    private void reduceTree() {
        line("float[] s = new float[16];");
        open("if (L == 16) { // the lane-swap tree: one vector of the 16 sums");
        for (int i = 0; i < 8; i++) {
            int row = i & 1;
            int col = 2 * ((i >> 1) & 1) + ((i >> 2) & 1);
            line(swap("t8_" + i, "a" + row + col, "a" + (row + 2) + col, 8));
        }
        for (int m = 4, n = 4; m >= 1; m /= 2, n /= 2) {
            for (int i = 0; i < n; i++) {
                String prev = "t" + (2 * m) + "_";
                line(swap("t" + m + "_" + i, prev + (2 * i), prev + (2 * i + 1), m));
            }
        }
        line("t1_0.intoArray(s, 0);");
        reopen("} else { // narrower vectors (AVX2: 8 lanes) have no 16-way tree");
        for (int r = 0; r < 4; r++) {
            int row = r;
            line(join(4, c -> "s[" + (row * 4 + c) + "] = a" + row + c + ".reduceLanes(VectorOperators.ADD);"));
        }
        close("}");
    }

    private static String swap(String result, String first, String second, int bit) {
        return "FloatVector " + result + " = " + first + ".blend(" + second + ", M" + bit + ").add("
                + second + ".blend(" + first + ", M" + bit + ").rearrange(SW" + bit + "));";
    }
}
