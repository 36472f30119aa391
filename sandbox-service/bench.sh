#!/usr/bin/env bash
# Benchmarks sandbox-service against a plain `docker run --rm` and writes BENCHMARK.md.
#
#   bash sandbox-service/bench.sh          # 40 runs per cell
#   RUNS=100 bash sandbox-service/bench.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${RUNS:-40}

bash deploy/sandbox/build-images.sh
cargo build --release -q -p sandbox-service --example bench
table=$(RUST_LOG=warn target/release/examples/bench "$RUNS" 2>/dev/null)

{
    echo "# sandbox-service benchmark"
    echo
    echo "Hello world (\`console.log('hello')\`, \`print('hello')\`), end to end from a gRPC client on"
    echo "the same host. Three paths, same image and same isolation flags:"
    echo
    echo "- **docker run --rm**: the \`docker\` CLI creating, starting, waiting for and removing a fresh"
    echo "  container (\`node -e\` / \`python3 -c\`): the floor for a fresh container."
    echo "- **sandbox, no pool**: \`Execute\` creating and starting a fresh container per run, then an"
    echo "  exec that unpacks the code and runs it; the container is removed after the answer."
    echo "- **sandbox, warm pool**: \`Execute\` taking a started idle container from a pool of 4."
    echo
    echo "Each cell: one warm-up run, then $RUNS runs spread over the given number of concurrent"
    echo "clients. p50/p95 are per-run latencies; runs/s is runs divided by the cell's wall time."
    echo "Every container has 0.5 CPU, which dominates interpreter start-up (Node.js especially)."
    echo
    echo "Command: \`RUNS=$RUNS bash sandbox-service/bench.sh\` ($(date -u +%Y-%m-%d), release build)"
    echo
    echo "$table"
    echo
    echo "## Machine"
    echo
    echo '```'
    echo "nproc: $(nproc)"
    echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel: $(uname -r)"
    echo "docker: $(docker version -f '{{.Server.Version}}') ($(docker info -f '{{.Driver}}, cgroup v{{.CgroupVersion}}' 2>/dev/null))"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    free -h
    echo '```'
} > sandbox-service/BENCHMARK.md
cat sandbox-service/BENCHMARK.md
