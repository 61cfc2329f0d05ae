-- wrk script for the order API benchmark (ops/bench/api/wrk.py): POST /orders/ with a
-- different body on every request.
--
-- Sides alternate buy/sell, prices are random in 99.90..100.10 (so buys and sells cross
-- and trades happen), quantities random in 1..10. Every response whose status is not 2xx
-- is counted; done() prints one line "BENCH_JSON {...}" with the totals and the latency
-- percentiles (microseconds), which wrk.py parses. Usable on its own too:
--
--   wrk -t1 -c64 -d5s -s ops/bench/api/wrk_orders.lua http://127.0.0.1:8000/orders/
--
-- "-- user USER_ID" adds "user_id": USER_ID to every order. With auth on, the
-- arguments after "--" are "signed" KEY_ID FILE THREADS: FILE holds signed
-- orders, one per line "timestamp<TAB>signature<TAB>body" (ops/bench/api/signing.py), and
-- thread n of THREADS sends lines n, n + THREADS, ...; each once, as a real client signs
-- each request once. A thread that runs out starts again from its first line: those
-- replays answer 401 and count as non-2xx.

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + id)
  sent = 0
  non2xx = 0
  headers = {["Content-Type"] = "application/json"}
  signed = nil
  user = ""
  if args[1] == "user" then
    user = string.format(',"user_id":"%s"', args[2])
  elseif args[1] == "signed" then
    headers["EX-ACCESS-KEY"] = args[2]
    local count = tonumber(args[4])
    signed = {}
    local n = 0
    for line in io.lines(args[3]) do
      if n % count == id - 1 then
        -- Split once here: matching a line per request would cost wrk, which shares the
        -- cores with the server, more than building a plain order does.
        local timestamp, sign, body = line:match("^([^\t]+)\t([^\t]+)\t(.*)$")
        table.insert(signed, {timestamp, sign, body})
      end
      n = n + 1
    end
  end
end

function request()
  sent = sent + 1
  if signed then
    local order = signed[(sent - 1) % #signed + 1]
    headers["EX-ACCESS-TIMESTAMP"] = order[1]
    headers["EX-ACCESS-SIGN"] = order[2]
    return wrk.format("POST", nil, headers, order[3])
  end
  local side = (sent % 2 == 0) and "sell" or "buy"
  local cents = 9990 + math.random(0, 20)
  local body = string.format('{"side":"%s","quantity":%d,"price":"%d.%02d"%s}',
                             side, math.random(1, 10), math.floor(cents / 100), cents % 100,
                             user)
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non_2xx":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
