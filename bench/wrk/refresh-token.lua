-- wrk: POST /token grant_type=refresh_token with client_secret_basic, spending each refresh
-- token of a pre-generated pool exactly once (rotation makes every token single-use).
-- env: BENCH_BASIC, BENCH_POOL (file, one URL-encoded token per line), BENCH_EXTRA (appended to
-- the body, e.g. "&resource=..."), BENCH_THREADS (wrk's -t). Thread i of n takes tokens i, i+n,
-- i+2n, ... When a thread
-- runs out it sends a marker token (the server refuses it: a non-2xx response), and done()
-- reports how many tokens were used, so an exhausted pool can never pass as a valid run.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  nthreads = tonumber((assert(os.getenv("BENCH_THREADS"), "BENCH_THREADS")))
  local path = assert(os.getenv("BENCH_POOL"), "BENCH_POOL")
  local extra = os.getenv("BENCH_EXTRA") or ""
  tokens = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id then tokens[#tokens + 1] = line end
    i = i + 1
  end
  ntokens = #tokens
  used = 0
  exhausted = 0
  headers = {
    ["Authorization"] = "Basic " .. assert(os.getenv("BENCH_BASIC"), "BENCH_BASIC"),
    ["Content-Type"] = "application/x-www-form-urlencoded",
  }
  prefix = "grant_type=refresh_token" .. extra .. "&refresh_token="
end

function request()
  local token
  if used < #tokens then
    used = used + 1
    token = tokens[used]
  else
    exhausted = exhausted + 1
    token = "pool-exhausted"
  end
  return wrk.format("POST", nil, headers, prefix .. token)
end

function done(summary, latency, requests)
  local used_total, exhausted_total, pool = 0, 0, 0
  for _, t in ipairs(threads) do
    used_total = used_total + t:get("used")
    exhausted_total = exhausted_total + t:get("exhausted")
    pool = pool + t:get("ntokens")
  end
  io.write(string.format("pool: %d used of %d, %d requests after exhaustion\n", used_total, pool, exhausted_total))
end
