-- Take one unit of an item's stock for one request, at most once, and only before the
-- request's deadline. The request's outcome is kept, so the same request run again (a
-- client's retry after a timeout, while the first run is still queued behind a stall)
-- gets the first outcome and takes no second unit. A run after the deadline, which the
-- server has stopped waiting for, takes nothing.
--
-- KEYS[1]  the item's stock (item.N): the quantity left, written when a server starts
-- KEYS[2]  the request's outcome
-- ARGV[1]  the request's deadline, in milliseconds since the epoch (Redis's clock)
-- ARGV[2]  how long the outcome is kept after the deadline, in milliseconds
-- Returns the quantity left after this request took a unit (0 or more), or
--   -1  none was left
--   -2  the deadline had passed: nothing taken
--   -3  the stock key is gone (Redis lost its data): nothing taken

local stock, outcome = KEYS[1], KEYS[2]
local deadline_ms, keep_ms = tonumber(ARGV[1]), tonumber(ARGV[2])

local first = redis.call('GET', outcome)
if first then
  return tonumber(first)
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if now_ms > deadline_ms then
  return -2
end

local result
local left = redis.call('GET', stock)
if not left then
  result = -3
elseif tonumber(left) < 1 then
  result = -1
else
  result = tonumber(left) - 1
  redis.call('SET', stock, result)
end
redis.call('SET', outcome, result, 'PX', deadline_ms - now_ms + keep_ms)
return result
