-- wrk script of bench/registry.sh: one request shape per run, from the environment.
--   WRK_METHOD  GET or POST (default GET)
--   WRK_PATH    request path
--   WRK_BODIES  optional file of JSON bodies, one per line: each request sends one at random
--   WRK_BEARER  optional bearer credential
--   WRK_OUT     file the summary is written to (JSON, one line)
--   WRK_HIST    optional file the latency distribution is written to (CSV `latency_us,count`:
--               every distinct latency wrk recorded and how many requests took it)
--   WRK_DELAY_MS optional pause (whole ms) each connection makes after an answer before its next
--               request: a fixed offered load below saturation (16 connections and 2 ms: at most
--               8,000 requests/s). wrk starts a request's clock when it writes it (wrk.c
--               socket_writeable), so the pause is not in the latencies.
local method = os.getenv("WRK_METHOD") or "GET"
local path = os.getenv("WRK_PATH") or "/"
local bodies_file = os.getenv("WRK_BODIES") or ""
local bearer = os.getenv("WRK_BEARER") or ""
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "")
local bodies = {}
local headers = {}

function init(args)
  if bodies_file ~= "" then
    for line in io.lines(bodies_file) do
      if line ~= "" then
        bodies[#bodies + 1] = line
      end
    end
    headers["Content-Type"] = "application/json"
  end
  if bearer ~= "" then
    headers["Authorization"] = "Bearer " .. bearer
  end
  -- Each wrk thread has its own Lua state: seed each differently.
  math.randomseed(os.time() + tonumber(tostring(headers):match("0x(%x+)") or "0", 16) % 100000)
end

function request()
  if #bodies > 0 then
    return wrk.format(method, path, headers, bodies[math.random(#bodies)])
  end
  return wrk.format(method, path, headers, nil)
end

-- wrk calls delay() only if the script defines it (script_has_delay): defined only when paced.
if delay_ms and delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local f = assert(io.open(os.getenv("WRK_OUT"), "w"))
  f:write(string.format(
    '{"loadgen":"wrk","requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
  f:close()
  local hist = os.getenv("WRK_HIST") or ""
  if hist ~= "" then
    local h = assert(io.open(hist, "w"))
    h:write("latency_us,count\n")
    -- latency(i): the i-th distinct recorded value (µs) and its count, ascending.
    for i = 1, #latency do
      local value, count = latency(i)
      h:write(string.format("%d,%d\n", value, count))
    end
    h:close()
  end
end
