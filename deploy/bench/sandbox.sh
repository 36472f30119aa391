#!/usr/bin/env bash
# Benchmarks sandbox-service against a plain `docker run --rm`, with and without warm pools, and
# through the gateway; writes docs/benchmarks/sandbox.md.
#
#   bash deploy/bench/sandbox.sh          # 40 runs per cell
#   RUNS=100 bash deploy/bench/sandbox.sh
#   PROFILE=debug bash deploy/bench/sandbox.sh   # debug build (when a release build is out of reach)
#   BENCH_LOG=/tmp/bench.log bash deploy/bench/sandbox.sh   # keep the example's stderr (failed runs)
#
# The gateway cells use the release binaries of sandbox-service and the gateway on loopback, a
# development token (HS256), rate limiting off, logs at warn.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
RUNS=${RUNS:-40}
GATEWAY_PORT=${GATEWAY_PORT:-18480}
SANDBOX_PORT=${SANDBOX_PORT:-18454}
POOL=$((RUNS + 1))
PROFILE=${PROFILE:-release}

# shellcheck source=deploy/bench/common.sh
source deploy/bench/common.sh

bash deploy/sandbox/build-images.sh
if [ "$PROFILE" = release ]; then
    cargo build --release -q -p sandbox-service -p gateway --bin sandbox-service --bin gateway --example bench
else
    cargo build -q -p sandbox-service -p gateway --bin sandbox-service --bin gateway --example bench
fi
bin=target/$PROFILE

before=$(machine)

# Paths measured inside the example's own process (it starts sandbox-service in-process).
table=$(RUST_LOG=warn "$bin/examples/bench" "$RUNS" 2>>"${BENCH_LOG:-/dev/null}" | grep "^|")

# Then the gateway in front of a sandbox-service process, started only now so that filling its
# pools does not load the machine during the other cells.
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
RUST_LOG=warn METRICS_LISTEN_ADDR=off SANDBOX_LISTEN_ADDR=127.0.0.1:$SANDBOX_PORT \
    SANDBOX_INSTANCE=bench-gateway SANDBOX_POOL_SIZE=0 \
    SANDBOX_POOL_SIZES="python=$POOL,javascript=$POOL" SANDBOX_MAX_CONCURRENT_RUNS=8 \
    "$bin/sandbox-service" >"$work/sandbox.log" 2>&1 &
pid[sandbox]=$!
RUST_LOG=warn GATEWAY_LISTEN_ADDR=127.0.0.1:$GATEWAY_PORT SANDBOX_SERVICE_URL=http://127.0.0.1:$SANDBOX_PORT \
    AUTH_HS256_SECRET=$secret RATE_LIMIT_ENABLED=false GATEWAY_WORKERS=2 \
    DATABASE_URL="sqlite://$work/gateway.db?mode=rwc" \
    "$bin/gateway" >"$work/gateway.log" 2>&1 &
pid[gateway]=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$GATEWAY_PORT/health" >/dev/null && break
    sleep 0.1
done
token=$(AUTH_HS256_SECRET=$secret "$bin/gateway" token --user bench-user)
gateway_rows=$(RUST_LOG=warn BENCH_ONLY=gateway BENCH_GATEWAY_URL=http://127.0.0.1:$GATEWAY_PORT \
    BENCH_TOKEN=$token BENCH_GATEWAY_INSTANCE=bench-gateway BENCH_GATEWAY_POOL=$POOL \
    "$bin/examples/bench" "$RUNS" 2>>"${BENCH_LOG:-/dev/null}" | grep "^| gateway")
table=$(printf '%s\n%s' "$table" "$gateway_rows")
after=$(machine | grep 'load average')

{
    echo "# sandbox-service benchmark"
    echo
    echo "Hello world (\`console.log('hello')\`, \`print('hello')\`), end to end from a client on the"
    echo "same host. Same image and same isolation flags on every path:"
    echo
    echo "- **docker run --rm**: the \`docker\` CLI creating, attaching to, starting, waiting for and"
    echo "  removing a fresh container (\`node -e\` / \`python3 -c\`): the floor for a fresh container."
    echo "- **sandbox, no pool**: gRPC \`Execute\` creating, attaching to and starting a fresh container"
    echo "  (its supervisor starts the interpreter), then sending the run on its stdin; the container"
    echo "  is removed after the answer."
    echo "- **sandbox, warm pool**: gRPC \`Execute\` taking a container whose interpreter is already"
    echo "  running from the language's pool, sized $POOL so that the whole cell is served warm (every"
    echo "  pool full before each cell; refills run in the background during the cell, as in service)."
    echo "- **sandbox, pool of 2, back to back**: the default pool size under back-to-back runs: the"
    echo "  pool drains and most runs create their container on the spot (a burst drains gracefully)."
    echo "- **gateway → sandbox, warm pool**: HTTP \`POST /api/sandbox/execute\` with a bearer token"
    echo "  through the gateway (release binaries, keep-alive connections) to a sandbox-service process"
    echo "  with pools of $POOL; also paced at one run a second (concurrency 1), a rate at which the"
    echo "  background refills and removals keep up."
    echo
    echo "Each cell: one warm-up run, then $RUNS runs spread over the given number of concurrent"
    echo "clients. p50/p95 are per-run latencies; runs/s is runs divided by the cell's wall time."
    echo "Every container has 0.5 CPU."
    echo
    echo "Command: \`RUNS=$RUNS bash deploy/bench/sandbox.sh\` ($(date -u +%Y-%m-%d), $PROFILE build)"
    echo
    echo "$table"
    echo
    echo "## Machine"
    echo
    echo '```'
    echo "$before"
    echo "at the end: $after"
    echo '```'
} > docs/benchmarks/sandbox.md.new
mv docs/benchmarks/sandbox.md.new docs/benchmarks/sandbox.md
cat docs/benchmarks/sandbox.md
