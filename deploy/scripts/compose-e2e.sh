#!/usr/bin/env bash
# The compose stack end to end, as an operator runs it: images built, `docker compose up` with the
# CI override docker-compose.ci.yml (the outside providers replaced by the fake-providers service
# inside the stack: Anthropic Messages API and Vercel API), every service healthy, then a user
# journey through the published gateway port only:
#
#   health and ready · only the gateway published, every container non-root · each service's
#   metrics port answers on its network · from inside ai-service: PostgreSQL's project database,
#   Redis without a password, sandbox-service and project-service are out of reach, and from
#   deploy-service (which may reach it) project-service refuses an unsigned call · HS256 token · project create → add file → list
#   · sandbox run of that file · AI generate (JSON, then streamed as SSE) against the fake
#   Anthropic API → the generated code saved to the project and run in the sandbox · a (fake)
#   Vercel account connected through the API, then a deploy of the project to it, followed over
#   SSE until `ready` with its URL · project-service
#   restarted while writes go on, no acknowledged write lost · rate limit 429 · `down -v` leaves no
#   container, volume or network behind.
#
#   bash deploy/scripts/compose-e2e.sh             # builds binaries and images first
#   SKIP_BUILD=1 bash deploy/scripts/compose-e2e.sh   # images already built
#   KEEP=1 ...                                     # leave the stack up for inspection
#   E2E_LOCAL_BASES=0 ...                          # with a registry: official postgres/redis
#                                                  # (default: local builds from Debian packages,
#                                                  # deploy/images/local-bases.sh; the older
#                                                  # E2E_COMPOSE_OVERRIDE= means the same)
#   BASE_IMAGE=debian:bookworm-slim ...            # runtime base (see deploy/images/build.sh)
#
# Bounded: every wait has a deadline, and the whole run stops after E2E_TIMEOUT_SECS (default 900)
# past the image build.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/scripts/tools.sh
source deploy/scripts/tools.sh

log() { echo "compose-e2e: $*" >&2; }
passed=0 failed=0
ok() { passed=$((passed + 1)); log "PASS $*"; }
fail() { failed=$((failed + 1)); log "FAIL $*"; }
summary() { echo "compose-e2e: $passed passed, $failed failed, 0 skipped (this script has no skips)"; }

# PostgreSQL and Redis: local builds where no registry is reachable (this machine), else the
# official images. E2E_COMPOSE_OVERRIDE= (empty) is the older spelling of E2E_LOCAL_BASES=0.
LOCAL_BASES=${E2E_LOCAL_BASES:-1}
if [ "${E2E_COMPOSE_OVERRIDE-unset}" = "" ]; then LOCAL_BASES=0; fi

# ---- images -----------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    bash deploy/images/build.sh
    if [ "$LOCAL_BASES" = 1 ]; then bash deploy/images/local-bases.sh postgres redis; fi
    bash deploy/sandbox/build-images.sh
fi
E2E_DEADLINE=$((SECONDS + ${E2E_TIMEOUT_SECS:-900}))
left() { echo $((E2E_DEADLINE - SECONDS)); }

# ---- configuration: a throwaway .env with fresh secrets ---------------------------------------
work=$(mktemp -d)
PROJECT=autocrea-e2e-$$
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret() { python3 -c 'import secrets; print(secrets.token_hex(24))'; }
HS256_SECRET=$(secret)
{
    grep -Ev '^(AUTH_HS256_SECRET|SECRETS_KEY|GATEWAY_PORT|GATEWAY_BIND|DOCKER_GID|SANDBOX_INSTANCE|[A-Z_]*PASSWORD|IDENTITY_[A-Z_]*|AUTOCREA_VERSION|POSTGRES_IMAGE|REDIS_IMAGE)=' .env.example
    if [ "$LOCAL_BASES" = 1 ]; then
        echo "POSTGRES_IMAGE=autocrea/postgres-local:bookworm"
        echo "REDIS_IMAGE=autocrea/redis-local:bookworm"
    else
        grep -E '^(POSTGRES_IMAGE|REDIS_IMAGE)=' .env.example
    fi
    echo "AUTH_HS256_SECRET=$HS256_SECRET"
    echo "SECRETS_KEY=$(python3 -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')"
    echo "GATEWAY_BIND=127.0.0.1"
    echo "GATEWAY_PORT=$port"
    echo "AUTOCREA_VERSION=${IMAGE_TAG:-latest}"
    echo "DOCKER_GID=$(stat -c %g /var/run/docker.sock)"
    echo "SANDBOX_INSTANCE=$PROJECT"
    for v in POSTGRES PROJECT_DB AI_DB DEPLOY_DB GATEWAY_DB REDIS REDIS_GATEWAY REDIS_AI; do echo "${v}_PASSWORD=$(secret)"; done
    bash deploy/scripts/identity-keys.sh env
} >"$work/env"
envvar() { grep -E "^$1=" "$work/env" | tail -1 | cut -d= -f2-; }

files=(-f docker-compose.yml -f docker-compose.ci.yml)
dc() { compose --project-name "$PROJECT" --env-file "$work/env" "${files[@]}" "$@"; }

leftovers() {
    {
        docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"
        docker ps -aq --filter "label=org.autocrea.sandbox.owner=$PROJECT"
        docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT"
        docker network ls -q --filter "label=com.docker.compose.project=$PROJECT"
    } | wc -l
}

cleanup() {
    local rc=$?
    if [ "${KEEP:-0}" = 1 ]; then
        log "KEEP=1: stack left up; stop it with: docker compose -p $PROJECT --env-file $work/env ${files[*]} down -v"
        summary
        exit "$rc"
    fi
    if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
        log "service logs (last 40 lines each):"
        dc logs --no-color --tail 40 >&2 || true
    fi
    dc down -v --remove-orphans --timeout 20 >/dev/null 2>&1 || true
    local n
    n=$(leftovers)
    if [ "$n" -eq 0 ]; then ok "down -v left no container, volume or network behind"; else fail "down -v left $n objects behind"; rc=1; fi
    rm -rf "$work"
    summary
    if [ "$failed" -ne 0 ]; then rc=1; fi
    exit "$rc"
}
trap cleanup EXIT

if dc config -q; then ok "docker compose config is valid"; else fail "docker compose config"; exit 1; fi

# ---- up, every service healthy ------------------------------------------------------------------
log "starting the stack ($PROJECT, gateway on 127.0.0.1:$port)"
t0=$SECONDS
if dc up -d --wait --wait-timeout "$(( $(left) < 240 ? $(left) : 240 ))" >"$work/up.log" 2>&1; then
    ok "every service healthy in $((SECONDS - t0)) s"
else
    cat "$work/up.log" >&2
    dc ps >&2 || true
    fail "the stack did not become healthy"
    exit 1
fi
# Only the gateway publishes a port.
published=$(dc ps --format json | python3 -c '
import json, sys
text = sys.stdin.read().strip()
rows = json.loads(text) if text.startswith("[") else [json.loads(l) for l in text.splitlines() if l]
print(" ".join(sorted({r["Service"] for r in rows for p in (r.get("Publishers") or []) if p.get("PublishedPort")})))')
if [ "$published" = gateway ]; then ok "only the gateway publishes a port"; else fail "services publishing ports: '$published'"; fi
# Every service, and the fake providers, run as the non-root image user.
for svc in gateway ai-service deploy-service project-service sandbox-service fake-providers; do
    uid=$(dc exec -T "$svc" id -u)
    if [ "$uid" = 10001 ]; then :; else fail "$svc runs as uid $uid"; fi
done
ok "the five services and fake-providers run as uid 10001"
# Each service's metrics port answers on the internal network (what a Prometheus in the stack
# would scrape), here from inside the gateway's container.
scraped=()
for target in ai-service:9101 deploy-service:9102 project-service:9103 sandbox-service:9104 gateway:8000; do
    # Read whole, then searched: `grep -q` stopping early would cut curl's write short, and with
    # pipefail a long page (sandbox-service's) would then count as a failure.
    page=$(dc exec -T gateway curl -fsS --max-time 5 "http://$target/metrics" 2>&1 || true)
    if grep -q '^# TYPE ' <<<"$page"; then
        scraped+=("$target")
    else
        fail "no Prometheus metrics at http://$target/metrics on its network: $(head -c 300 <<<"$page")"
    fi
done
if [ "${#scraped[@]}" = 5 ]; then ok "metrics answer on the service networks: ${scraped[*]}"; fi

# ---- segmentation: what a compromised ai-service could reach ------------------------------------
ai_ctr=$(dc ps -q ai-service)
# PostgreSQL: reachable (its own database), but its role may not open project-service's, and it
# holds no other role's password. psql comes from the PostgreSQL image, run in ai-service's
# network namespace.
pg_image=$(envvar POSTGRES_IMAGE)
ai_pw=$(envvar AI_DB_PASSWORD)
psql_from_ai() {
    docker run --rm --network "container:$ai_ctr" --entrypoint psql "$pg_image" \
        "postgresql://ai:$ai_pw@postgres:5432/$1" -Atc 'select current_database()' 2>&1 || true
}
own_db=$(psql_from_ai ai)
project_db=$(psql_from_ai project)
if [ "$own_db" = ai ] && [[ "$project_db" == *"permission denied for database"* ]] &&
    ! dc exec -T ai-service env | grep -q '^PROJECT_DB_PASSWORD\|project:'; then
    ok "from ai-service: its own database opens, the project database is refused ($(echo "$project_db" | tail -1 | cut -c1-70))"
else
    fail "from ai-service: own database '$own_db', project database '$project_db'"
fi
# Redis: nothing without a password; with ai-service's own ACL user, not the gateway's keys.
redis_from_ai() {
    dc exec -T ai-service sh -c "printf '$1' | curl -s --max-time 3 telnet://redis:6379" 2>&1 | tr -d '\r' || true
}
anonymous=$(redis_from_ai 'PING\r\nQUIT\r\n')
as_ai=$(redis_from_ai "AUTH ai $(envvar REDIS_AI_PASSWORD)\r\nGET autocrea:rl:api:someone\r\nFLUSHALL\r\nQUIT\r\n")
if [[ "$anonymous" == *NOAUTH* ]] && [[ "$as_ai" == "+OK"*"-NOPERM"*"-NOPERM"* ]]; then
    ok "from ai-service: Redis refuses a client without a password (NOAUTH), and ai-service's user the gateway's keys and FLUSHALL (NOPERM)"
else
    fail "from ai-service: Redis answered '$anonymous' without a password, '$as_ai' as ai"
fi
# The services ai-service does not call are not on its networks at all.
unreachable=()
for target in sandbox-service:50054 project-service:50053 deploy-service:50052; do
    rc=0
    dc exec -T ai-service curl -s -o /dev/null --max-time 3 --http2-prior-knowledge "http://$target/" || rc=$?
    # 6: the name does not resolve on its networks; 7: refused; 28: no answer.
    case $rc in 6 | 7 | 28) unreachable+=("$target") ;; *) fail "from ai-service, $target answered (curl exit $rc)" ;; esac
done
if [ "${#unreachable[@]}" = 3 ]; then ok "from ai-service, out of reach: ${unreachable[*]}"; fi
# project-service refuses a call that only claims a user (x-user-id, no assertion), here from
# deploy-service, the one service that may reach it.
unsigned=$(dc exec -T deploy-service sh -c "printf '\000\000\000\000\000' | curl -sS --http2-prior-knowledge --max-time 5 -X POST \
    -H 'content-type: application/grpc' -H 'te: trailers' -H 'x-user-id: e2e-alice-$$' --data-binary @- -D - -o /dev/null \
    http://project-service:50053/autocrea.project.v1.ProjectService/ListProjects" 2>&1 | tr -d '\r' || true)
if grep -qi '^grpc-status: 16' <<<"$unsigned"; then
    reason=$(grep -i '^grpc-message:' <<<"$unsigned" | cut -c15- | python3 -c 'import sys, urllib.parse; print(urllib.parse.unquote(sys.stdin.read().strip())[:80])')
    ok "project-service refuses an unsigned call claiming a user: UNAUTHENTICATED ($reason)"
else
    fail "project-service answered an unsigned call: $unsigned"
fi

# ---- the journey --------------------------------------------------------------------------------
BASE=http://127.0.0.1:$port
# A development token for user $1, minted by the gateway container itself (`gateway token`),
# with the secret it was started with.
token() {
    dc exec -T gateway gateway token --user "$1"
}
# call METHOD PATH TOKEN [BODY] → sets $code and $body
call() {
    local method=$1 path=$2 tok=$3 data=${4:-}
    local args=(-sS -o "$work/body" -w '%{http_code}' -D "$work/headers" --max-time 30 -X "$method"
        -H "Authorization: Bearer $tok")
    if [ -n "$data" ]; then args+=(-H 'Content-Type: application/json' --data-binary "$data"); fi
    code=$(curl "${args[@]}" "$BASE$path" || echo 000)
    body=$(cat "$work/body" 2>/dev/null || true)
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1" <<<"$body"; }

code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/health")
if [ "$code" = 200 ]; then ok "GET /health 200"; else fail "GET /health $code"; fi
ready=000
until [ "$ready" = 200 ] || [ "$(left)" -le 0 ] || [ $((SECONDS - t0)) -gt 300 ]; do
    ready=$(curl -s -o "$work/ready" -w '%{http_code}' --max-time 5 "$BASE/ready" || true)
    [ "$ready" = 200 ] || sleep 1
done
if [ "$ready" = 200 ]; then ok "GET /ready 200 (every service answers its health check)"; else fail "GET /ready $ready: $(cat "$work/ready")"; fi

alice=$(token "e2e-alice-$$")
call POST /api/projects "$alice" '{"name":"e2e journey","language":"python"}'
if [ "$code" = 201 ]; then pid=$(json 'd["id"]'); ok "project created ($pid)"; else fail "create project: $code $body"; exit 1; fi
program='print("hello from the sandbox", 6 * 7)'
call PUT "/api/projects/$pid/files/main.py" "$alice" "$(python3 -c 'import json,sys; print(json.dumps({"content": sys.argv[1]}))' "$program")"
if [ "$code" = 201 ]; then ok "file main.py added"; else fail "add file: $code $body"; fi
call GET "/api/projects/$pid/files" "$alice"
if [ "$code" = 200 ] && [ "$(json '[f["path"] for f in d["items"]]')" = "['main.py']" ]; then ok "file list shows main.py"; else fail "list files: $code $body"; fi
call GET /api/projects "$alice"
if [ "$code" = 200 ] && [ "$(json "any(p['id'] == '$pid' for p in d['items'])")" = True ]; then ok "project list shows the project"; else fail "list projects: $code $body"; fi

# Sandbox: run the stored file.
call GET "/api/projects/$pid/files/main.py" "$alice"
stored=$(json 'd["content"]')
call POST /api/sandbox/execute "$alice" "$(python3 -c 'import json,sys; print(json.dumps({"language": "python", "files": [{"name": "main.py", "content": sys.argv[1]}], "entry": "main.py"}))' "$stored")"
if [ "$code" = 200 ] && [ "$(json 'd["stdout"]')" = "hello from the sandbox 42" ] && [ "$(json 'd["exitCode"]')" = 0 ]; then
    ok "sandbox ran main.py: $(json 'd["stdout"]') (limits: $(json 'd["limits"]["memoryBytes"]//1048576') MiB, network $(json 'd["limits"]["network"]'))"
else
    fail "sandbox run: $code $body"
fi

# ---- AI: generate against the fake Anthropic API, keep the code, run it ------------------------
# The fake answers prose around a bash block and a python block (ai_service::testing::DEFAULT_TEXT);
# ai-service must pick the python block and strip the fences.
want_code='def greet(name):
    return f"Hello, {name}!"

print(greet("world"))'
call POST /api/ai/generate "$alice" '{"prompt":"a function that greets someone by name, then greet the world","language":"python"}'
if [ "$code" = 200 ] && [ "$(json 'd["code"]')" = "$want_code" ] && [ "$(json 'd["cached"]')" = False ]; then
    ok "AI generate: $(json 'd["language"]') code from $(json 'd["model"]'), $(json 'd["tokensUsed"]') tokens ($(json 'd["inputTokens"]') in, $(json 'd["outputTokens"]') out)"
else
    fail "AI generate: $code $body"
fi
generated=$(json 'd.get("code", "")' 2>/dev/null || true)
# The same request again is answered from the prompt cache (Redis), with no tokens spent.
call POST /api/ai/generate "$alice" '{"prompt":"a function that greets someone by name, then greet the world","language":"python"}'
if [ "$code" = 200 ] && [ "$(json 'd["cached"]')" = True ] && [ "$(json 'd["code"]')" = "$want_code" ]; then
    ok "AI generate repeated: answered from the prompt cache"
else
    fail "AI generate repeated: $code $body"
fi
# Streamed: SSE `delta` events as the provider's tokens arrive, then `done` with the result.
code=$(curl -sS -N -o "$work/stream" -w '%{http_code}' --max-time 30 -X POST \
    -H "Authorization: Bearer $alice" -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
    --data-binary '{"prompt":"greet the world, streamed","language":"python"}' "$BASE/api/ai/generate" || echo 000)
streamed=$(python3 - "$work/stream" <<'PY'
import json, sys
events, name = [], None
for line in open(sys.argv[1], encoding="utf-8").read().splitlines():
    if line.startswith("event: "):
        name = line[7:]
    elif line.startswith("data: "):
        events.append((name, json.loads(line[6:])))
deltas = [d["text"] for n, d in events if n == "delta"]
done = [d for n, d in events if n == "done"]
errors = [d for n, d in events if n == "error"]
if errors or len(done) != 1 or len(deltas) < 2:
    print(f"BAD {len(deltas)} deltas, {len(done)} done, errors {errors}")
else:
    print(json.dumps({"deltas": len(deltas), "text": "".join(deltas), "code": done[0]["code"]}))
PY
)
if [ "$code" = 200 ] && [ "$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["code"] == sys.argv[2] and "```python" in d["text"])' "$streamed" "$want_code" 2>/dev/null)" = True ]; then
    ok "AI generate streamed: $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["deltas"])' "$streamed") delta events, then done with the same code"
else
    fail "AI generate streamed: $code $streamed $(head -c 600 "$work/stream")"
fi
# The generated code goes into the project and runs in the sandbox.
call PUT "/api/projects/$pid/files/greet.py" "$alice" "$(python3 -c 'import json,sys; print(json.dumps({"content": sys.argv[1]}))' "$generated")"
if [ "$code" = 201 ]; then ok "generated code saved as greet.py"; else fail "save greet.py: $code $body"; fi
call POST /api/sandbox/execute "$alice" "$(python3 -c 'import json,sys; print(json.dumps({"language": "python", "files": [{"name": "greet.py", "content": sys.argv[1]}], "entry": "greet.py"}))' "$generated")"
if [ "$code" = 200 ] && [ "$(json 'd["stdout"]')" = "Hello, world!" ] && [ "$(json 'd["exitCode"]')" = 0 ]; then
    ok "sandbox ran the generated greet.py: $(json 'd["stdout"]')"
else
    fail "sandbox run of the generated code: $code $body"
fi

# ---- deploy: the user's own (fake) Vercel account connected, the project deployed to it --------
# fake_providers::vercel::TOKEN: the fake's test account, not a secret.
call PUT /api/integrations/vercel "$alice" '{"token":"vercel-test-token-s3cr3t"}'
if [ "$code" = 200 ] && [ "$(json 'd["accountId"]')" = user_1 ] && [ "$(json '"token" in d')" = False ]; then
    ok "Vercel account $(json 'd["accountName"]') connected (token ending $(json 'd["tokenLast4"]'), never shown again)"
else
    fail "connect Vercel: $code $body"
fi
call POST /api/deploy "$alice" "{\"projectId\":\"$pid\",\"provider\":\"vercel\",\"target\":\"production\"}"
if [ "$code" = 202 ] && [ "$(json 'd["state"]')" = queued ]; then
    did=$(json 'd["id"]')
    ok "deployment $did to vercel accepted (queued)"
else
    did=""
    fail "create deployment: $code $body"
fi
if [ -n "$did" ]; then
    # The event stream ends with the final event; the deadline bounds a deployment that never ends.
    t2=$SECONDS
    curl -sS -N -o "$work/events" --max-time "$(( $(left) < 90 ? $(left) : 90 ))" \
        -H "Authorization: Bearer $alice" "$BASE/api/deployments/$did/events" || true
    followed=$(python3 - "$work/events" <<'PY'
import json, sys
events = [json.loads(l[6:]) for l in open(sys.argv[1], encoding="utf-8").read().splitlines()
          if l.startswith("data: ")]
states = []
for e in events:
    if not states or states[-1] != e.get("state"):
        states.append(e.get("state"))
last = events[-1] if events else {}
print(" → ".join(map(str, states)), "|", last.get("final"), "|", last.get("url") or "")
PY
)
    follow_secs=$((SECONDS - t2))
    call GET "/api/deployments/$did" "$alice"
    url=$(json 'd["url"] or ""' || true)
    if [ "$code" = 200 ] && [ "$(json 'd["state"]')" = ready ] && [ "$(json 'd["account"]')" = user ] &&
        [[ "$url" =~ ^https://[a-z0-9.-]+\.vercel\.app$ ]] &&
        [[ "$followed" == *"→ ready | True | $url" ]]; then
        ok "deployment followed over SSE to ready in ${follow_secs} s (${followed%% |*}), live at $url"
    else
        fail "deployment: $code $body; events: $followed $(head -c 600 "$work/events")"
    fi
fi

# ---- restart project-service while writes go on -------------------------------------------------
bob=$(token "e2e-bob-$$")
call POST /api/projects "$bob" '{"name":"restart","language":"text"}'
rpid=$(json 'd["id"]')
: >"$work/acked"
writer() {
    local i c
    for i in $(seq 1 60); do
        c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X PUT -H "Authorization: Bearer $bob" \
            -H 'Content-Type: application/json' --data-binary "{\"content\":\"write $i\"}" \
            "$BASE/api/projects/$rpid/files/f$i.txt" || true)
        case $c in 200 | 201) echo "$i" >>"$work/acked" ;; *) echo "$i $c" >>"$work/refused" ;; esac
        sleep 0.15
    done
}
writer &
writer_pid=$!
sleep 2
t1=$SECONDS
dc restart --timeout 20 project-service >/dev/null 2>&1
restart_secs=$((SECONDS - t1))
wait "$writer_pid"
acked=$(wc -l <"$work/acked")
refused=$( [ -f "$work/refused" ] && wc -l <"$work/refused" || echo 0)
# project-service healthy again before the check (the writes above may have ended first).
for _ in $(seq 1 60); do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$(dc ps -q project-service)")" = healthy ] && break
    sleep 1
done
call GET "/api/projects/$rpid/files" "$bob"
lost=$(python3 - "$work/acked" <<PY
import hashlib, json, sys
files = {f["path"]: f["sha256"] for f in json.loads('''$body''')["items"]}
lost = []
for i in open(sys.argv[1]).read().split():
    want = hashlib.sha256(f"write {i}".encode()).hexdigest()
    if files.get(f"f{i}.txt") != want:
        lost.append(i)
print(" ".join(lost))
PY
)
if [ "$code" = 200 ] && [ -z "$lost" ] && [ "$acked" -gt 0 ]; then
    ok "restart of project-service (${restart_secs} s): $acked acknowledged writes all present, $refused refused during the restart"
else
    fail "restart: list $code; acknowledged $acked, lost: ${lost:-?}"
fi
if [ "$refused" -gt 0 ] && ! awk '{print $2}' "$work/refused" | grep -qvE '^(503|504)$'; then
    ok "writes refused during the restart answered 503/504 only"
elif [ "$refused" -gt 0 ]; then
    fail "writes refused during the restart: $(tr '\n' ' ' <"$work/refused")"
fi

# ---- rate limit on the api group --------------------------------------------------------------
carol=$(token "e2e-carol-$$")
n=0 code=000
while [ "$code" != 429 ] && [ "$n" -lt 200 ]; do
    n=$((n + 1))
    call GET "/api/projects?limit=1" "$carol"
done
if [ "$code" = 429 ] && grep -qi '^retry-after:' "$work/headers"; then
    ok "rate limit: request $n answered 429 with Retry-After $(grep -i '^retry-after:' "$work/headers" | tr -d '\r' | cut -d' ' -f2)s"
else
    fail "rate limit: no 429 after $n requests (last $code)"
fi
# Another user still has budget: limits are per user.
call GET "/api/projects?limit=1" "$alice"
if [ "$code" = 200 ]; then ok "another user is not limited"; else fail "another user got $code"; fi
