#!/usr/bin/env bash
# The SLO capacity search with Gatling (README: "Load tests and capacity").
#
#   load-tests/capacity.sh --smoke [options]      a gateway on the demo model on 127.0.0.1, a search of
#                                                 at most ~2 minutes, the summary; the gateway is stopped
#                                                 at the end, on failure and on Ctrl-C
#   load-tests/capacity.sh --url URL [options]    against a running gateway or cluster
#   load-tests/capacity.sh --many-adapters [opts] a gateway with 2,000 uploaded adapters (Zipf 1.5) against
#                                                 the same load over 8 always-hot ones (--help lists opts)
#
# Options are the search's (--help lists them): --slo-ttft-p99 S, --slo-tpot-p99 S, --max-error-rate F,
# --keys FILE, --metrics-url URL,..., --start-rate, --max-rate, --step-seconds, --max-steps, the workload's
# (--tenants, --adapters-per-tenant, --popularity, --prompt-len, --output-len, --arrivals, --seed) ...
#
# Needs Java 17+ and Maven; builds gateway/target/lora-gateway.jar and this module's classpath when they
# are missing (Maven offline first, then online for a first download).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root"

die() { echo "capacity.sh: $*" >&2; exit 2; }

java=${JAVA_HOME:+$JAVA_HOME/bin/}java
command -v "$java" >/dev/null || die "no java on the PATH (Java 17 or later is needed)"
feature=$("$java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
[[ ${feature%%.*} =~ ^[0-9]+$ && ${feature%%.*} -ge 17 ]] || die "Java 17 or later is needed, $java is $feature"

smoke=0
many=0
args=()
tenants=4
per_tenant=2
while (($#)); do
  case $1 in
    --smoke) smoke=1 ;;
    --many-adapters) many=1 ;;
    --tenants) tenants=${2:-}; args+=("$1" "${2:-}"); shift ;;
    --adapters-per-tenant) per_tenant=${2:-}; args+=("$1" "${2:-}"); shift ;;
    *) args+=("$1") ;;
  esac
  shift
done

jar=gateway/target/lora-gateway.jar
cpfile=load-tests/target/classpath.txt
if [[ ! -f $jar || ! -f $cpfile || ! -d load-tests/target/classes ]]; then
  echo "building $jar and the load-tests classpath (mvn -q package -DskipTests) ..."
  build=(-q package -DskipTests dependency:build-classpath -Dmdep.outputFile=target/classpath.txt -DincludeScope=runtime)
  mvn -o "${build[@]}" >/dev/null 2>&1 || mvn "${build[@]}"
fi
cp="load-tests/target/classes:$(cat "$cpfile")"

search() {
  # --add-opens: Gatling's stats writer reads String internals (as gatling-maven-plugin passes it)
  # exec: run in the background below, $! is then the JVM itself, which the trap stops
  exec "$java" --add-opens=java.base/java.lang=ALL-UNNAMED -Xmx1g -DOPT_OUT_TRACKING=true -cp "$cp" \
    dev.loragateway.loadtests.CapacityMain "$@"
}

if ((many)); then
  ((smoke)) && die "--many-adapters starts its own gateway: not with --smoke"
  exec "$java" --add-opens=java.base/java.lang=ALL-UNNAMED -Xmx1g -DOPT_OUT_TRACKING=true -cp "$cp" \
    dev.loragateway.loadtests.ManyAdapters "${args[@]}"
fi

if ((!smoke)); then
  for a in "${args[@]}"; do
    [[ $a == --url || $a == --url=* || $a == -h || $a == --help || $a == -V || $a == --version ]] && search "${args[@]}"
  done
  die "give --smoke or --url URL (--help lists the options)"
fi

[[ $tenants =~ ^[0-9]+$ && $per_tenant =~ ^[0-9]+$ ]] || die "--tenants and --adapters-per-tenant must be integers, got '$tenants' and '$per_tenant'"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lora-capacity.XXXXXX")
server=
searching=
stop() {
  if [[ -n $searching ]] && kill -0 "$searching" 2>/dev/null; then kill -TERM "$searching" 2>/dev/null || true; fi
  if [[ -n $server ]] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true   # serve drains and exits; java -jar passes it to its relaunched JVM
    for _ in $(seq 1 150); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap stop EXIT
trap 'exit 130' INT TERM

"$java" -jar "$jar" demo-model --out "$tmp/model" >/dev/null 2>&1 || die "demo-model --out $tmp/model failed"
# the workload's adapters t<i>-a<j>, each one of the demo model's PEFT adapters in turn
demo=()
for d in "$tmp"/model/adapters/*/; do demo+=("$(basename "$d")"); done
modules=()
k=0
for ((t = 0; t < tenants; t++)); do
  for ((a = 0; a < per_tenant; a++)); do
    modules+=("t$t-a$a=$tmp/model/adapters/${demo[k % ${#demo[@]}]}")
    k=$((k + 1))
  done
done
serve=(serve --host 127.0.0.1 --port 0 --model "$tmp/model" --data-dir "$tmp/data")
((${#modules[@]})) && serve+=(--lora-modules "$(IFS=,; echo "${modules[*]}")")
"$java" -jar "$jar" "${serve[@]}" >"$tmp/serve.out" 2>"$tmp/serve.log" &
server=$!
url=
for _ in $(seq 1 1200); do
  url=$(sed -n 's/^lora-gateway listening on \(http:[^ ]*\) .*/\1/p' "$tmp/serve.out")
  [[ -n $url ]] && break
  kill -0 "$server" 2>/dev/null || { tail -20 "$tmp/serve.log" >&2; echo "capacity.sh: serve exited before it was ready" >&2; exit 1; }
  sleep 0.1
done
[[ -n $url ]] || { tail -20 "$tmp/serve.log" >&2; echo "capacity.sh: serve not ready in 120 s" >&2; exit 1; }
echo "gateway on the demo model at $url (${#modules[@]} adapters)"
# bounded: 8 s per rate, at most 7 rates (doubling from 8/s, then bisecting), a 4 s warm-up; later options win
# (in the background, so that a signal runs the trap at once rather than after the search)
search --url "$url" --start-rate 8 --max-rate 1024 --step-seconds 8 --max-steps 7 --warmup-seconds 4 \
  --slo-ttft-p99 0.5 --slo-tpot-p99 0.05 "${args[@]}" &
searching=$!
wait "$searching"
