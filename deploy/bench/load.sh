#!/usr/bin/env bash
# Load benchmark of the gateway (issue #8): every route family at a fixed request rate and at
# saturation, next to the baselines that show how close we are to the limit (nginx answering a
# static 200 for /health; a direct gRPC call to project-service for the project routes), plus
# what rate limiting itself costs. Writes docs/benchmarks/load.md.
#
#   bash deploy/bench/load.sh                      # about 5 minutes once the release build exists
#   SECS=10 bash deploy/bench/load.sh              # longer runs
#   SANDBOX=0 REDIS=0 bash deploy/bench/load.sh    # without Docker / without the Redis scenario
#
# The stack is the separate release binaries on loopback (so each process's peak memory is its
# own): project-service and ai-service on SQLite, sandbox-service on the local Docker engine,
# the gateway, and the fake Anthropic provider of ai-service's test suite (answers at once).
# Load generators share the machine: wrk (closed loop, CONNECTIONS connections) for saturation,
# and the workspace's own open-loop client (gateway/examples/load.rs) for fixed rates (each
# request timed from when it was due) and for the direct gRPC baseline.
#
# Rate limits stay on, set far above what the run can reach, so limiting does not distort the
# figures and a 429 would count as an error; one scenario compares limiting off, in-process,
# Redis-backed, and every request over the limit. Missing tools (wrk, nginx) are installed from
# Debian's packages; Redis comes from deploy/scripts/test-services.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

SECS=${SECS:-5}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
GATEWAY_WORKERS=${GATEWAY_WORKERS:-2}
RATE_HEALTH=${RATE_HEALTH:-2000}
RATE_PROJECT=${RATE_PROJECT:-2000}
RATE_CREATE=${RATE_CREATE:-500}
RATE_AI=${RATE_AI:-200}
RATE_SANDBOX=${RATE_SANDBOX:-2}
SANDBOX_SECS=${SANDBOX_SECS:-10}
SANDBOX_CONNECTIONS=${SANDBOX_CONNECTIONS:-4}
SANDBOX=${SANDBOX:-1}
REDIS=${REDIS:-1}
PORT_BASE=${PORT_BASE:-18100}
OUT=${OUT:-docs/benchmarks/load.md}

GATEWAY_PORT=$((PORT_BASE + 80))
PROJECT_PORT=$((PORT_BASE + 53))
AI_PORT=$((PORT_BASE + 51))
SANDBOX_PORT=$((PORT_BASE + 54))
NGINX_PORT=$((PORT_BASE + 90))
# Far above anything this run reaches: 100 million per minute and group.
HIGH_LIMIT=100000000/1m
BENCH_USER=bench-user
LOAD=target/release/examples/load

log() { echo "load: $*" >&2; }
# shellcheck source=deploy/bench/common.sh
source deploy/bench/common.sh

started=$SECONDS
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
date_at_start=$(date -u '+%Y-%m-%d %H:%M UTC')

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} from Debian's packages"
    apt_install "${missing[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

log "building release binaries (once)"
cargo build --release -q -p gateway -p project-service -p ai-service -p sandbox-service --bins --example load
if [ "$SANDBOX" = 1 ]; then
    bash deploy/sandbox/build-images.sh
fi
redis_url=
if [ "$REDIS" = 1 ]; then
    # shellcheck source=deploy/scripts/test-services.sh
    source deploy/scripts/test-services.sh
    redis_url=$TEST_REDIS_URL
fi


# start NAME VAR=VALUE... COMMAND...: runs COMMAND with the variables, logs under $work.
start() {
    local name=$1
    shift
    env RUST_LOG=warn "$@" >"$work/$name.log" 2>&1 &
    pid[$name]=$!
}

stop() {
    local name=$1
    kill "${pid[$name]}" 2>/dev/null || true
    wait "${pid[$name]}" 2>/dev/null || true
    unset "pid[$name]"
}

wait_port() {
    local name=$1 port=$2
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if ! kill -0 "${pid[$name]}" 2>/dev/null; then
            log "$name exited; its log:"
            cat "$work/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    log "$name did not listen on $port"
    exit 1
}

# Peak resident memory (VmHWM) per process, reset between scenarios through clear_refs.
processes() { local name; for name in "${!pid[@]}"; do echo "$name"; done | sort; }
process_pids() {
    # nginx is a master and its workers: all of them count.
    if [ "$1" = nginx ]; then
        echo "${pid[nginx]}"
        pgrep -P "${pid[nginx]}" || true
    else
        echo "${pid[$1]}"
    fi
}
reset_peaks() {
    local name p
    for name in $(processes); do
        for p in $(process_pids "$name"); do
            echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true
        done
    done
}
peak_mib() {
    local total=0 kb p
    for p in $(process_pids "$1"); do
        kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${kb:-0}))
    done
    awk -v kb="$total" 'BEGIN { printf "%.1f", kb / 1024 }'
}
peaks() {
    local name out=()
    for name in $(processes); do
        [ "$name" = provider ] && continue
        out+=("$name $(peak_mib "$name") MiB")
    done
    local joined
    joined=$(printf '%s, ' "${out[@]}")
    echo "${joined%, }"
}

# ---- the stack ---------------------------------------------------------------------------------

secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
token=$(AUTH_HS256_SECRET=$secret target/release/gateway token --user "$BENCH_USER")

start provider "$LOAD" provider
for _ in $(seq 1 100); do grep -q '^PROVIDER_KEY=' "$work/provider.log" && break; sleep 0.1; done
provider_url=$(sed -n 's/^PROVIDER_URL=//p' "$work/provider.log")
provider_key=$(sed -n 's/^PROVIDER_KEY=//p' "$work/provider.log")
[ -n "$provider_url" ] || { log "the fake provider did not start"; cat "$work/provider.log" >&2; exit 1; }

start project-service PROJECT_LISTEN_ADDR="127.0.0.1:$PROJECT_PORT" \
    DATABASE_URL="sqlite://$work/project.db?mode=rwc" target/release/project-service
start ai-service AI_LISTEN_ADDR="127.0.0.1:$AI_PORT" DATA_DIR="$work" \
    AI_PROVIDER=anthropic ANTHROPIC_BASE_URL="$provider_url" ANTHROPIC_API_KEY="$provider_key" \
    target/release/ai-service
wait_port project-service "$PROJECT_PORT"
wait_port ai-service "$AI_PORT"
if [ "$SANDBOX" = 1 ]; then
    start sandbox-service SANDBOX_LISTEN_ADDR="127.0.0.1:$SANDBOX_PORT" SANDBOX_INSTANCE=loadbench \
        target/release/sandbox-service
    wait_port sandbox-service "$SANDBOX_PORT"
fi

# start_gateway [VAR=VALUE...]: the gateway with high limits, overridable per scenario.
start_gateway() {
    start gateway GATEWAY_LISTEN_ADDR="127.0.0.1:$GATEWAY_PORT" GATEWAY_WORKERS="$GATEWAY_WORKERS" \
        DATA_DIR="$work" AUTH_HS256_SECRET="$secret" \
        PROJECT_SERVICE_URL="http://127.0.0.1:$PROJECT_PORT" AI_SERVICE_URL="http://127.0.0.1:$AI_PORT" \
        SANDBOX_SERVICE_URL="http://127.0.0.1:$SANDBOX_PORT" \
        RATE_LIMIT_ENABLED=true RATE_LIMIT_API="$HIGH_LIMIT" RATE_LIMIT_AI="$HIGH_LIMIT" \
        RATE_LIMIT_SANDBOX="$HIGH_LIMIT" "$@" target/release/gateway
    wait_port gateway "$GATEWAY_PORT"
}
start_gateway

mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes $GATEWAY_WORKERS;
daemon off;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx;
    proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx;
    uwsgi_temp_path $work/nginx;
    scgi_temp_path $work/nginx;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location = /health {
            default_type application/json;
            return 200 '{"status":"ok","services":[]}';
        }
    }
}
EOF
start nginx "$NGINX" -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf"
wait_port nginx "$NGINX_PORT"

gw=http://127.0.0.1:$GATEWAY_PORT
project=$(curl -fsS -X POST "$gw/api/projects" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"name":"bench","language":"typescript"}' |
    sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
[ -n "$project" ] || { log "could not create the benchmark project"; exit 1; }

# ---- measuring ---------------------------------------------------------------------------------

declare -A result=()
declare -A memory=()
raw=()

# record KEY LINE: keeps a RESULT line.
record() {
    result[$1]=${2#RESULT }
    raw+=("$1 ${2#RESULT }")
    log "$1: ${2#RESULT }"
}
# fixed KEY RATE URL [METHOD BODY [SECONDS]]: the open-loop client at RATE requests/s, bearer
# token sent.
fixed() {
    local key=$1 rate=$2 url=$3 method=${4:-GET} body=${5:-} secs=${6:-$SECS}
    local args=(http --url "$url" --method "$method" --token "$token" --rate "$rate" --secs "$secs")
    [ -n "$body" ] && args+=(--body "$body")
    record "$key" "$("$LOAD" "${args[@]}" | grep '^RESULT')"
}
# saturate KEY CONNECTIONS URL [METHOD BODY [SECONDS]]: wrk, closed loop, after a 1 s warm-up.
saturate() {
    local key=$1 conns=$2 url=$3 method=${4:-GET} body=${5:-} secs=${6:-$SECS}
    local threads=$THREADS
    [ "$conns" -lt "$threads" ] && threads=$conns
    local vars=(WRK_METHOD="$method" WRK_TOKEN="$token" WRK_NONCE="$key-$RANDOM")
    [ -n "$body" ] && vars+=(WRK_BODY="$body")
    env "${vars[@]}" wrk -t"$threads" -c"$conns" -d1s --timeout 30s -s deploy/bench/load.lua "$url" >/dev/null
    record "$key" "$(env "${vars[@]}" wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 30s \
        -s deploy/bench/load.lua "$url" | grep '^RESULT')"
}
grpc() {
    local key=$1
    shift
    record "$key" "$("$LOAD" grpc-get --url "http://127.0.0.1:$PROJECT_PORT" --user "$BENCH_USER" \
        --id "$project" --secs "$SECS" "$@" | grep '^RESULT')"
}
# scenario NAME: starts a scenario's peak-memory window; end_scenario NAME closes it.
scenario() { log "scenario: $1"; reset_peaks; }
end_scenario() { memory[$1]=$(peaks); }

ai_body='{"prefix":"# call {n}\ndef add(a, b):\n    ","language":"python"}'
create_body='{"name":"load {n}","language":"typescript"}'
sandbox_body='{"language":"python","code":"print(\"hello\")"}'

scenario health
fixed health-gw-fixed "$RATE_HEALTH" "$gw/health"
fixed health-nginx-fixed "$RATE_HEALTH" "http://127.0.0.1:$NGINX_PORT/health"
saturate health-gw-sat "$CONNECTIONS" "$gw/health"
saturate health-nginx-sat "$CONNECTIONS" "http://127.0.0.1:$NGINX_PORT/health"
end_scenario health

scenario get
fixed get-gw-fixed "$RATE_PROJECT" "$gw/api/projects/$project"
grpc get-grpc-fixed --rate "$RATE_PROJECT"
saturate get-gw-sat "$CONNECTIONS" "$gw/api/projects/$project"
grpc get-grpc-sat --concurrency "$CONNECTIONS"
end_scenario get

# Rate limiting: the same route with limiting off, in-process, in Redis (limits never reached),
# and with every request over the limit (the 429 path).
limit_modes=(off local)
[ -n "$redis_url" ] && limit_modes+=(redis)
limit_modes+=(reject)
for mode in "${limit_modes[@]}"; do
    stop gateway
    case $mode in
        off) start_gateway RATE_LIMIT_ENABLED=false ;;
        local) start_gateway ;;
        redis) start_gateway REDIS_URL="$redis_url" ;;
        reject) start_gateway RATE_LIMIT_API=1/1h ;;
    esac
    scenario "limit-$mode"
    if [ "$mode" = reject ]; then
        # Spend the one request of the budget, so that everything measured is refused.
        curl -fsS -o /dev/null -H "Authorization: Bearer $token" "$gw/api/projects/$project" || true
    fi
    fixed "limit-$mode-fixed" "$RATE_PROJECT" "$gw/api/projects/$project"
    saturate "limit-$mode-sat" "$CONNECTIONS" "$gw/api/projects/$project"
    end_scenario "limit-$mode"
done
stop gateway
start_gateway

scenario create
fixed create-gw-fixed "$RATE_CREATE" "$gw/api/projects" POST "$create_body"
saturate create-gw-sat "$CONNECTIONS" "$gw/api/projects" POST "$create_body"
end_scenario create

scenario ai
fixed ai-gw-fixed "$RATE_AI" "$gw/api/ai/complete" POST "$ai_body"
saturate ai-gw-sat "$CONNECTIONS" "$gw/api/ai/complete" POST "$ai_body"
end_scenario ai

if [ "$SANDBOX" = 1 ]; then
    scenario sandbox
    fixed sandbox-gw-fixed "$RATE_SANDBOX" "$gw/api/sandbox/execute" POST "$sandbox_body" "$SANDBOX_SECS"
    saturate sandbox-gw-sat "$SANDBOX_CONNECTIONS" "$gw/api/sandbox/execute" POST "$sandbox_body" "$SANDBOX_SECS"
    end_scenario sandbox
fi

load_at_end=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$((SECONDS - started))

# ---- the report --------------------------------------------------------------------------------

# field KEY NAME: one value of a recorded RESULT line.
field() { tr ' ' '\n' <<<"${result[$1]:-}" | sed -n "s/^$2=//p"; }
num() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }
ms() { awk -v v="$1" 'BEGIN { if (v < 10) printf "%.2f ms", v; else printf "%.1f ms", v }'; }
row() {
    local label=$1 key=$2
    [ -n "${result[$key]:-}" ] || return 0
    echo "| $label | $(num "$(field "$key" rps)") | $(ms "$(field "$key" p50_ms)") | $(ms "$(field "$key" p95_ms)") | $(ms "$(field "$key" p99_ms)") | $(ms "$(field "$key" max_ms)") | $(field "$key" errors) |"
}
header() {
    echo "| what | requests/s | p50 | p95 | p99 | max | errors (non-2xx, timeouts, socket) |"
    echo "|---|---|---|---|---|---|---|"
}
calc() { awk "BEGIN { printf \"%.2f\", $1 }"; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo "**met**"; else echo "**missed**"; fi; }

health_ratio=$(calc "$(field health-gw-sat rps) / $(field health-nginx-sat rps) * 100")
get_p99=$(field get-gw-fixed p99_ms)
added_p50=$(calc "$(field get-gw-fixed p50_ms) - $(field get-grpc-fixed p50_ms)")
added_p99=$(calc "$(field get-gw-fixed p99_ms) - $(field get-grpc-fixed p99_ms)")
steady_errors=0
for key in health-gw-fixed get-gw-fixed create-gw-fixed ai-gw-fixed sandbox-gw-fixed; do
    errors=$(field "$key" errors)
    steady_errors=$((steady_errors + ${errors:-0}))
done
# What limiting costs per request at saturation: the difference in CPU-bound time per request.
per_request_us() { calc "1000000 / $(field "$1" rps)"; }
cost_us() { calc "1000000 / $(field "$1" rps) - 1000000 / $(field limit-off-sat rps)"; }
reject_rps() { calc "$(field limit-reject-sat requests) / $SECS"; }

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && ! git diff --quiet HEAD 2>/dev/null; then
    commit="$commit with uncommitted changes"
fi
{
    echo "# Load benchmark: the gateway over loopback"
    echo
    echo "Issue #8's load benchmark. Generated by \`deploy/bench/load.sh\`; rerun it to refresh this file."
    echo
    echo "## Machine and run"
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| date | $date_at_start |"
    echo "| command | \`bash deploy/bench/load.sh\` (SECS=$SECS, SANDBOX_SECS=$SANDBOX_SECS, CONNECTIONS=$CONNECTIONS, GATEWAY_WORKERS=$GATEWAY_WORKERS) |"
    echo "| commit | $commit (release build) |"
    echo "| nproc | $(nproc) |"
    echo "| CPU | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') |"
    echo "| memory | $(free -g | awk '/Mem:/ {print $2}') GiB |"
    echo "| kernel | $(uname -r) |"
    echo "| load average (1, 5, 15 min) | at start $load_at_start; at end $load_at_end |"
    echo "| wall time | ${elapsed} s |"
    echo
    echo "Everything runs on this one machine: the load generators (wrk with $THREADS threads; the"
    echo "open-loop client, 2 threads) share the cores with the gateway ($GATEWAY_WORKERS workers) and the"
    echo "services, so the saturation figures are those of the whole machine, not of the gateway alone."
    echo "A load average above 0 at the start means other work was running too: figures are then upper"
    echo "bounds on latency and lower bounds on throughput."
    echo
    echo "## How it is measured"
    echo
    echo "- Stack: the separate release binaries on 127.0.0.1: gateway (HS256 auth, rate limits on at"
    echo "  $HIGH_LIMIT per group, far above any rate reached here), project-service and ai-service on"
    echo "  SQLite, sandbox-service on the local Docker engine (warm pool of 2), and ai-service's fake"
    echo "  Anthropic provider (answers at once; a new connection per call). Logs at \`warn\`."
    echo "- **Fixed rate**: \`gateway/examples/load.rs\`, open loop: one request every 1/rate s whatever"
    echo "  the earlier ones are doing, each timed from when it was *due* (no coordinated omission),"
    echo "  1 s warm-up then $SECS s measured. requests/s counts successful responses."
    echo "- **Saturation**: \`wrk -t$THREADS -c$CONNECTIONS\` (closed loop), 1 s warm-up then $SECS s; the"
    echo "  direct gRPC baseline uses the same client with $CONNECTIONS concurrent callers on one HTTP/2"
    echo "  connection (as the gateway's own channel does)."
    echo "- Baselines: nginx from Debian (\`worker_processes $GATEWAY_WORKERS\`, \`return 200\` of the same"
    echo "  JSON) for \`/health\`; \`GetProject\` sent straight to project-service for the project read."
    echo "- Bodies carry a token unique to the request, so AI prompts never hit the prompt cache."
    echo "- Peak memory: VmHWM of each process, reset (\`/proc/<pid>/clear_refs\`) at the start of each"
    echo "  scenario, so it is the peak during that scenario (nginx: master and workers summed)."
    echo
    echo "## Targets"
    echo
    echo "| target | figure | verdict |"
    echo "|---|---|---|"
    echo "| \`GET /health\` at ≥ 80 % of nginx's requests/s (saturation) | $health_ratio % ($(num "$(field health-gw-sat rps)") vs $(num "$(field health-nginx-sat rps)")) | $(verdict "$health_ratio >= 80") |"
    echo "| authenticated \`GET /api/projects/{id}\` at $(num "$RATE_PROJECT")/s: p99 < 5 ms | $(ms "$get_p99") | $(verdict "$get_p99 < 5") |"
    echo "| same: gateway's added p50 over the direct gRPC call < 0.5 ms | $added_p50 ms (p99: $added_p99 ms) | $(verdict "$added_p50 < 0.5") |"
    echo "| zero non-2xx in steady load below the rate limit (every fixed-rate run) | $steady_errors | $(verdict "$steady_errors == 0") |"
    echo
    echo "## \`GET /health\`"
    echo
    header
    row "gateway, $(num "$RATE_HEALTH")/s" health-gw-fixed
    row "nginx, $(num "$RATE_HEALTH")/s" health-nginx-fixed
    row "gateway, saturation ($CONNECTIONS connections)" health-gw-sat
    row "nginx, saturation ($CONNECTIONS connections)" health-nginx-sat
    echo
    echo "Peak RSS: ${memory[health]}."
    echo
    echo "## Authenticated \`GET /api/projects/{id}\`"
    echo
    echo "JWT check → gRPC → project-service → SQLite, against \`GetProject\` sent straight to"
    echo "project-service with the same user id in metadata."
    echo
    header
    row "gateway, $(num "$RATE_PROJECT")/s" get-gw-fixed
    row "direct gRPC, $(num "$RATE_PROJECT")/s" get-grpc-fixed
    row "gateway, saturation ($CONNECTIONS connections)" get-gw-sat
    row "direct gRPC, saturation ($CONNECTIONS callers)" get-grpc-sat
    echo
    echo "Peak RSS: ${memory[get]}."
    echo
    echo "## \`POST /api/projects\`"
    echo
    header
    row "gateway, $(num "$RATE_CREATE")/s" create-gw-fixed
    row "gateway, saturation ($CONNECTIONS connections)" create-gw-sat
    echo
    echo "Peak RSS: ${memory[create]}."
    echo
    echo "## \`POST /api/ai/complete\` (fake provider)"
    echo
    header
    row "gateway, $(num "$RATE_AI")/s" ai-gw-fixed
    row "gateway, saturation ($CONNECTIONS connections)" ai-gw-sat
    echo
    echo "Peak RSS: ${memory[ai]}."
    echo
    if [ "$SANDBOX" = 1 ]; then
        echo "## \`POST /api/sandbox/execute\`, Python hello world ($SANDBOX_SECS s per run)"
        echo
        echo "Each run takes a warm container from the pool (interpreter already started), and the"
        echo "pool refills and removes containers in the background on the same two cores: the Docker"
        echo "engine, not the gateway, sets the saturation figure (see docs/benchmarks/sandbox.md)."
        echo "Container memory is not counted below."
        echo
        header
        row "gateway, $(num "$RATE_SANDBOX")/s" sandbox-gw-fixed
        row "gateway, saturation ($SANDBOX_CONNECTIONS connections)" sandbox-gw-sat
        echo
        echo "Peak RSS: ${memory[sandbox]}."
        echo
    fi
    echo "## What rate limiting costs"
    echo
    echo "Authenticated \`GET /api/projects/{id}\`, gateway restarted for each mode: limiting off"
    echo "(\`RATE_LIMIT_ENABLED=false\`), in-process (governor) and in Redis (one Lua script per request;"
    echo "Redis from \`deploy/scripts/test-services.sh\`, same machine) with limits never reached, and"
    echo "every request refused (limit \`1/1h\`, budget spent first: the 429 path)."
    echo
    header
    for mode in "${limit_modes[@]}"; do
        row "$mode, $(num "$RATE_PROJECT")/s" "limit-$mode-fixed"
        row "$mode, saturation ($CONNECTIONS connections)" "limit-$mode-sat"
    done
    echo
    echo "Cost per request, from the saturation runs (time per request on the saturated machine,"
    echo "1/requests/s, minus the same with limiting off), and added p50 at $(num "$RATE_PROJECT")/s:"
    echo
    echo "| mode | µs per request at saturation | cost vs off | p50 added at $(num "$RATE_PROJECT")/s |"
    echo "|---|---|---|---|"
    for mode in off local redis; do
        [ -n "${result[limit-$mode-sat]:-}" ] || continue
        echo "| $mode | $(per_request_us "limit-$mode-sat") | $(cost_us "limit-$mode-sat") µs | $(calc "$(field "limit-$mode-fixed" p50_ms) - $(field limit-off-fixed p50_ms)") ms |"
    done
    echo
    echo "Refused requests (429) at saturation: $(num "$(reject_rps)") per second with every request over"
    echo "the limit (the \`errors\` column above counts them)."
    echo
    echo "## Reading a missed target"
    echo
    echo "- The load generators and the servers share the same cores. At saturation wrk alone takes"
    echo "  a large part of one core, so the gateway's and nginx's figures are both capped by the"
    echo "  machine; with a quiet machine and the generator on other cores (\`taskset\`, or another host)"
    echo "  the ratio to nginx measures the gateway alone."
    echo "- The project read's latency is JWT verification, the gRPC hop and a SQLite read; the direct"
    echo "  gRPC row holds the last two, so the difference is the gateway (HTTP parsing, auth, limiter,"
    echo "  JSON) plus the difference between the HTTP/1.1 and HTTP/2 clients of the load generator."
    echo "- Other work on the machine (see the load average) shows up first in p99 and max."
    echo
    echo "## Raw results"
    echo
    echo '```'
    printf '%s\n' "${raw[@]}"
    echo '```'
} >"$OUT"
log "wrote $OUT in ${elapsed} s"
