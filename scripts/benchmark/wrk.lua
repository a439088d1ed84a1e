-- Request pattern and result summary for scripts/bench (driven by benchmark/loadgen.py).
-- Arguments (after `--`): MODE PREFIX KEYS LIMIT THREADS [HEADER]
--   HEADER  one request header "Name: value" sent with every request (e.g. a Range)
--   fixed   every request is GET PREFIX
--   random  GET PREFIX..n, n drawn uniformly from 0..KEYS-1
--   unique  GET PREFIX..thread.."-"..n: a URL never requested before
--   walk    GET PREFIX..n for n = 0, 1, 2, ... shared out between the threads
-- LIMIT > 0: each thread stops after LIMIT/THREADS responses (0: run for the duration).
-- done() prints one JSON line; benchmark/loadgen.py's Python generator prints the same one.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  mode, prefix = args[1], args[2]
  keys, nthreads = tonumber(args[3]), tonumber(args[5])
  per_thread = math.ceil(tonumber(args[4]) / nthreads)
  counter, responses, hits, non200 = 0, 0, 0, 0
  extra = {}
  if args[6] and args[6] ~= "" then
    local name, value = string.match(args[6], "^([^:]+):%s*(.*)$")
    extra[name] = value
  end
  fixed = wrk.format("GET", prefix, extra)
  math.randomseed(os.time() + id * 7919)
end

function request()
  if mode == "fixed" then
    return fixed
  end
  local path
  if mode == "random" then
    path = prefix .. math.random(0, keys - 1)
  elseif mode == "unique" then
    path = prefix .. id .. "-" .. counter
  else
    path = prefix .. (counter * nthreads + id)
  end
  counter = counter + 1
  return wrk.format("GET", path, extra)
end

function response(status, headers, body)
  responses = responses + 1
  if status ~= 200 and status ~= 206 then
    non200 = non200 + 1
  end
  if (headers["X-Cache"] or headers["x-cache"]) == "HIT" then
    hits = hits + 1
  end
  if responses == per_thread then
    -- wrk itself waits out its duration; loadgen.py interrupts it once every thread said this.
    io.write("stopped\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total, hit, bad = 0, 0, 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("responses")
    hit = hit + thread:get("hits")
    bad = bad + thread:get("non200")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "p50_ms": %.3f, "p99_ms": %.3f, ' ..
    '"errors": %d, "responses": %d, "hits": %d, "non200": %d}\n',
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.connect + e.read + e.write + e.timeout, total, hit, bad))
end
