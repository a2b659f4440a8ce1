-- Put before every scenario script by bench/wrk.py (a scenario may redefine setup and init).

-- Each thread starts at its own place in the scenario's list (next_index, 1-based after +1).
local threads_set_up = 0

function setup(thread)
  threads_set_up = threads_set_up + 1
  thread:set("offset", threads_set_up)
end

function init(args)
  next_index = offset or 0
end

-- WRK_DELAY_MS: each connection waits that long before each request (a steady load).
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "")
if delay_ms then
  function delay()
    return delay_ms
  end
end

-- One JSON line with what was measured.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
