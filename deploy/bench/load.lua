-- wrk script of deploy/bench/load.sh: optional method, bearer token and JSON body from the
-- environment, then one machine-readable RESULT line (the format of report.lua).
--
--   WRK_METHOD=POST  WRK_TOKEN=<jwt>  WRK_BODY='{"prefix":"x{n}"}'  wrk ... -s load.lua URL
--
-- `{n}` in the body becomes a token unique to the request across threads and runs, so that AI
-- prompts never hit the prompt cache.
local method = os.getenv("WRK_METHOD") or "GET"
local token = os.getenv("WRK_TOKEN")
local body = os.getenv("WRK_BODY")
local nonce = os.getenv("WRK_NONCE") or tostring(os.time())

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

-- Without a body every request is the same: let wrk build it once (a Lua `request` function
-- per request would cost the load generator CPU that the servers share).
wrk.method = method
if token then wrk.headers["Authorization"] = "Bearer " .. token end
if body then
  wrk.headers["Content-Type"] = "application/json"
  local counter = 0
  function request()
    counter = counter + 1
    local n = nonce .. "-" .. tostring(tid) .. "-" .. tostring(counter)
    return wrk.format(nil, nil, nil, (body:gsub("{n}", n)))
  end
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    "RESULT rps=%.0f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%d errors=%d statuses=status:%d,timeout:%d,socket:%d\n",
    math.max(0, summary.requests - summary.errors.status) / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    summary.requests, errors, summary.errors.status, summary.errors.timeout,
    summary.errors.connect + summary.errors.read + summary.errors.write))
end
