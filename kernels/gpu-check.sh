#!/usr/bin/env bash
# gpu-check.sh: run the CUDA tests (kernels, the batcher's CUDA forward pass, the GPU bench) and the
# GPU bench on a GPU machine that has no network, no Maven and no Java.
#
#   kernels/gpu-check.sh pack [DIR]
#       On the dev machine (a JDK 17+ with its jmods, Maven, and Maven Central or a filled ~/.m2).
#       Compiles the kernels, adapter-store, batcher and bench modules and their tests (a reactor
#       build, nothing installed) and writes DIR (default kernels/target/gpu-check, about 44 MB):
#         runtime/    a jlink'd Java runtime with only the modules the tests need (jdeps decides)
#         lib/        kernels.jar (with cuda/lora-gateway.fatbin when the build made one),
#                     adapter-store.jar, batcher.jar, bench.jar, the kernels, batcher and bench
#                     test jars, their runtime jars (JCuda with only its driver-API native,
#                     picocli), junit-platform-console-standalone.jar
#         gpu-check.sh  this script, so DIR/gpu-check.sh run works on its own
#   kernels/gpu-check.sh run [DIR] [--all] [-- LAUNCHER-ARGS...]
#       On the GPU machine. Runs the tests of dev.loragateway.kernels.cuda, CudaForwardPassGpuTest
#       and the GPU bench's (dev.loragateway.bench.gpu) (--all: every kernels test) with DIR's runtime and prints a tree of results (skipped tests say why; no XML
#       reports: the runtime leaves out java.xml). Exit status 0 when nothing failed. Arguments
#       after -- go to JUnit's ConsoleLauncher, e.g. -- --select-method
#       dev.loragateway.kernels.cuda.CudaContextGpuTest#aHandWrittenPtxKernelRuns
#       (then they replace the default selection).
#   kernels/gpu-check.sh bench [DIR] [-- BENCH-ARGS...]
#       On the GPU machine. Runs the GPU bench (dev.loragateway.bench.gpu.GpuBenchMain, the
#       same tables and --gpu-* options as `lora-gateway bench gpu`, see docs/gpu.md) with DIR's
#       runtime, e.g. -- --gpu-quick, or -- --gpu-only sgmv --gpu-ranks 16. Prints Markdown tables;
#       exit status 0, or 2 (the probe's reason on stderr) without a usable device.
#
# With the project's device tool: `kernels/gpu-check.sh pack` here, then run the command
# `kernels/gpu-check.sh run` (or `bench`) there with carry ["kernels/target/gpu-check"] (the pack is an ignored
# build output; carried paths may hold 64 MiB in all). JCuda unpacks its native library into
# java.io.tmpdir, which run points at DIR/tmp.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONSOLE_JAR=junit-platform-console-standalone.jar
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

die() { echo "gpu-check: $*" >&2; exit 2; }

# mvn offline first (the shared ~/.m2 usually has everything), then online
mvn_ol() { mvn -q -o "$@" >/dev/null 2>&1 || mvn -q "$@"; }

# the JDK whose jlink/jdeps/jar to use: JAVA_HOME, else the one javac belongs to
find_jdk() {
    local jdk=${JAVA_HOME:-}
    if [[ -z $jdk ]]; then
        command -v javac >/dev/null || die "no JAVA_HOME and no javac on the PATH"
        jdk=$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")
    fi
    [[ -x $jdk/bin/jlink && -x $jdk/bin/jdeps && -x $jdk/bin/jar ]] || die "$jdk has no jlink/jdeps/jar"
    [[ -f $jdk/jmods/java.base.jmod ]] || die "$jdk has no jmods/ (jlink needs them; install the full JDK)"
    echo "$jdk"
}

pack() {
    local out=${1:-$here/target/gpu-check}
    local root
    root=$(cd "$here/.." && pwd)
    command -v mvn >/dev/null || die "pack needs Maven on the PATH"
    local jdk
    jdk=$(find_jdk)
    mkdir -p "$(dirname "$out")"
    out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

    echo "gpu-check: compiling kernels, batcher (the CUDA forward pass), bench (the GPU bench) and their tests"
    (cd "$root" && mvn_ol test-compile "$DEPENDENCY_PLUGIN:build-classpath" -pl bench -am \
        -DincludeScope=runtime -Dmdep.outputFile=target/gpu-check-cp.txt)

    rm -rf "$out"
    mkdir -p "$out/lib" "$out/tmp"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT

    echo "gpu-check: collecting jars"
    local jar
    local m
    jars=()
    for m in kernels adapter-store batcher bench; do
        IFS=: read -r -a part < "$root/$m/target/gpu-check-cp.txt" || true  # no trailing newline: read says EOF
        jars+=("${part[@]}")
    done
    for jar in "${jars[@]}"; do
        [[ -f $jar ]] || continue                    # the reactor's own modules are class folders: jarred below
        [[ -f $out/lib/$(basename "$jar") ]] && continue
        case $(basename "$jar") in
            jcuda-natives-*.jar)
                # only the driver-API library: the others need CUDA 12 toolkit libraries and weigh 24 MB
                mkdir -p "$work/natives"
                (cd "$work/natives" && "$jdk/bin/jar" xf "$jar" && find lib -type f ! -name 'libJCudaDriver-*' -delete)
                "$jdk/bin/jar" --create --file "$out/lib/$(basename "$jar")" -C "$work/natives" lib
                ;;
            *) cp "$jar" "$out/lib/" ;;
        esac
    done
    local junit platform
    junit=$(sed -n 's:.*<junit.version>\(.*\)</junit.version>.*:\1:p' "$root/pom.xml" | head -1)
    [[ -n $junit ]] || die "no <junit.version> in $root/pom.xml"
    platform=$junit
    [[ $junit == 5.* ]] && platform=1.${junit#5.}   # JUnit 5.x.y runs on Platform 1.x.y
    (cd "$root" && mvn_ol -N "$DEPENDENCY_PLUGIN:copy" \
        -Dartifact="org.junit.platform:junit-platform-console-standalone:$platform" -DoutputDirectory="$work/console")
    cp "$work/console/junit-platform-console-standalone-$platform.jar" "$out/lib/$CONSOLE_JAR"
    "$jdk/bin/jar" --create --file "$out/lib/kernels.jar" -C "$root/kernels/target/classes" .
    "$jdk/bin/jar" --create --file "$out/lib/kernels-tests.jar" -C "$root/kernels/target/test-classes" .
    "$jdk/bin/jar" --create --file "$out/lib/adapter-store.jar" -C "$root/adapter-store/target/classes" .
    "$jdk/bin/jar" --create --file "$out/lib/batcher.jar" -C "$root/batcher/target/classes" .
    "$jdk/bin/jar" --create --file "$out/lib/batcher-tests.jar" -C "$root/batcher/target/test-classes" .
    "$jdk/bin/jar" --create --file "$out/lib/bench.jar" -C "$root/bench/target/classes" .
    "$jdk/bin/jar" --create --file "$out/lib/bench-tests.jar" -C "$root/bench/target/test-classes" .
    if [[ -f $root/kernels/target/classes/cuda/lora-gateway.fatbin ]]; then
        echo "gpu-check: the pack carries cuda/lora-gateway.fatbin"
    else
        echo "gpu-check: this build has no cuda/lora-gateway.fatbin (no nvcc): the kernel-module test will skip"
    fi

    echo "gpu-check: finding modules with jdeps"
    local found modules
    found=$("$jdk/bin/jdeps" --multi-release 17 --ignore-missing-deps --list-deps "$out"/lib/*.jar | tr -d ' ' \
        | grep -E '^(java|jdk)\.' | sed 's:/.*::' | sort -u | paste -sd, -)
    [[ $found == *java.base* ]] || die "jdeps found no modules: '$found'"
    # Dropped: java.desktop and java.sql, which only Jackson's optional java.beans / java.sql.Date
    # support reaches (together 14 MB of runtime), and java.xml, which only JUnit's XML reports
    # need (3 MB; run prints the results instead). Added: jdk.zipfs (JUnit scans jars for test
    # classes as zip file systems) and the Vector API, which incubator modules need named.
    modules=$(tr ',' '\n' <<< "$found,jdk.zipfs,jdk.incubator.vector" \
        | grep -vx -e java.desktop -e java.sql -e java.xml | sort -u | paste -sd, -)
    echo "gpu-check: jlink --add-modules $modules"
    "$jdk/bin/jlink" --add-modules "$modules" --strip-debug --no-header-files --no-man-pages --compress=2 \
        --output "$out/runtime"
    # plain files only: jlink links legal/ notices to java.base's, and copies of a tree may drop links
    local link
    while IFS= read -r link; do
        cp --remove-destination "$(readlink -f "$link")" "$link"
    done < <(find "$out/runtime" -type l)
    cp "$here/gpu-check.sh" "$out/gpu-check.sh"
    chmod +x "$out/gpu-check.sh"
    echo "gpu-check: packed $out: $(du -sh "$out" | cut -f1) (runtime $(du -sh "$out/runtime" | cut -f1), lib $(du -sh "$out/lib" | cut -f1))"
}

# the pack folder, absolute: DIR, else the one this script sits in or next to; its runtime runnable
find_pack() {
    local pack=$1
    if [[ -z $pack ]]; then
        # inside a pack (DIR/gpu-check.sh) or next to one (kernels/gpu-check.sh)
        if [[ -d $here/runtime ]]; then pack=$here; else pack=$here/target/gpu-check; fi
    fi
    [[ -d $pack ]] || die "no pack at $pack: run 'kernels/gpu-check.sh pack' on the dev machine"
    pack=$(cd "$pack" && pwd) # absolute: the tests run from the kernels folder (some read src/main/cuda)
    if [[ -f $pack/runtime/bin/java && ! -x $pack/runtime/bin/java ]]; then
        chmod u+x "$pack"/runtime/bin/* "$pack"/runtime/lib/jspawnhelper 2>/dev/null || true # a copy lost the modes
    fi
    [[ -x $pack/runtime/bin/java ]] || die "no pack at $pack: run 'kernels/gpu-check.sh pack' on the dev machine"
    mkdir -p "$pack/tmp"
    echo "$pack"
}

# the pack's jars but JUnit's launcher, as a class path
pack_classpath() {
    local cp="" jar
    for jar in "$1"/lib/*.jar; do
        [[ $(basename "$jar") == "$CONSOLE_JAR" ]] && continue
        cp=${cp:+$cp:}$jar
    done
    echo "$cp"
}

describe_machine() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader || true
    else
        echo "gpu-check: no nvidia-smi on the PATH"
    fi
    "$1/runtime/bin/java" -version 2>&1 | head -1
}

# parses [DIR] [--all] [-- ARGS...] into PACK (the pack folder, found), ALL and EXTRA; $1 says whether --all is allowed
parse_args() {
    local allow_all=$1
    shift
    PACK=""
    ALL=false
    EXTRA=()
    while (($#)); do
        case $1 in
            --all) $allow_all || die "unknown option $1 (options go after --)"; ALL=true ;;
            --) shift; EXTRA=("$@"); break ;;
            -*) die "unknown option $1" ;;
            *) PACK=$1 ;;
        esac
        shift
    done
    PACK=$(find_pack "$PACK")
}

run() {
    parse_args true "$@"
    local pack=$PACK all=$ALL extra=("${EXTRA[@]}")
    local cp
    cp=$(pack_classpath "$pack")
    local select=(--select-package dev.loragateway.kernels.cuda --select-class dev.loragateway.batcher.cuda.CudaForwardPassGpuTest
        --select-package dev.loragateway.bench.gpu)
    $all && select=(--select-package dev.loragateway.kernels)
    ((${#extra[@]})) && select=()
    describe_machine "$pack"
    [[ -d $here/src/main/cuda ]] && cd "$here"
    "$pack/runtime/bin/java" --add-modules=jdk.incubator.vector -Xmx2g -Djava.io.tmpdir="$pack/tmp" \
        -DOPT_OUT_TRACKING=true -jar "$pack/lib/$CONSOLE_JAR" execute --disable-banner --details=tree \
        --class-path "$cp" "${select[@]}" "${extra[@]}"
}

bench() {
    parse_args false "$@"
    local pack=$PACK extra=("${EXTRA[@]}")
    local cp
    cp=$(pack_classpath "$pack")
    describe_machine "$pack"
    exec "$pack/runtime/bin/java" --add-modules=jdk.incubator.vector -XX:MaxRAMPercentage=60 -Djava.io.tmpdir="$pack/tmp" \
        -cp "$cp" dev.loragateway.bench.gpu.GpuBenchMain "${extra[@]}"
}

case ${1:-} in
    pack) shift; pack "$@" ;;
    run) shift; run "$@" ;;
    bench) shift; bench "$@" ;;
    *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
