-- wrk script: cycle through the pixel paths in $BENCH_PATHS, count 200 responses exactly.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    table.insert(paths, line)
  end
  ok = 0
  i = math.random(#paths)
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], {["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Thunderbird/128.0"})
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("ok")
  end
  io.write(string.format(
    "RESULT %d %d %d %d %d\n",
    total, summary.requests, summary.duration, latency:percentile(50), latency:percentile(99)
  ))
end
