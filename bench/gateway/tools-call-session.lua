-- wrk: POST an MCP tools/call (echo) in an MCP session, each request with its own JSON-RPC id
-- (JSON-RPC 2.0 §4: ids of requests in flight are unique; the stdio gateway matches answers
-- by id). Env: BENCH_TOKEN (bearer), BENCH_SESSION (Mcp-Session-Id from initialize),
-- BENCH_PROTOCOL (the negotiated MCP-Protocol-Version). An answer that is not HTTP 200 with
-- the echoed text is counted; done() prints "BAD_ANSWERS N" (the sum over wrk's threads).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = os.getenv("BENCH_PROTOCOL") or "2025-11-25"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
wrk.headers["Mcp-Session-Id"] = os.getenv("BENCH_SESSION") or ""

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

-- Per-thread state (each wrk thread runs its own copy of this script); globals, so done() can
-- read them with thread:get.
bad = 0
next_id = 0
function request()
  next_id = next_id + 1
  return wrk.format(nil, nil, nil, string.format(
    '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}',
    next_id))
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body or "", "hello", 1, true) or string.find(body or "", '"error"', 1, true) then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("unexpected answer HTTP " .. status .. ": " .. string.sub(body or "", 1, 200) .. "\n") end
  end
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do
    n = n + (t:get("bad") or 0)
  end
  io.write(string.format("BAD_ANSWERS %d\n", n))
end
