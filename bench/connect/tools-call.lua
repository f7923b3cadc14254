-- wrk: POST an MCP tools/call (add) to the gateway directly, the ceiling for bench/connect.sh's
-- relay numbers. Env: BENCH_TOKEN (bearer), BENCH_SESSION (Mcp-Session-Id from initialize; may
-- be empty).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
local session = os.getenv("BENCH_SESSION")
if session and session ~= "" then
  wrk.headers["Mcp-Session-Id"] = session
end
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}'

-- Each wrk thread runs its own copy of this script: `bad` is a global of each thread's copy, and
-- done() (run in the main one) sums them with thread:get.
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end

bad = 0
response = function(status, headers, body)
  if status ~= 200 or not string.find(body or "", '"text":"5"', 1, true) then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("unexpected answer HTTP " .. status .. ": " .. string.sub(body or "", 1, 200) .. "\n") end
  end
end

done = function(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do
    n = n + (t:get("bad") or 0)
  end
  io.write(string.format("WRK_RESULT %d %d %.1f\n", summary.requests, n, summary.requests / (summary.duration / 1e6)))
end
