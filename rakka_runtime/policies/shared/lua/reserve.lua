-- Reserve one request's capacity, all or nothing: every bucket must hold what the request
-- needs, a concurrency slot must be free and the deployment must not be paused.
--
-- Buckets refill continuously from the elapsed server time (TIME), so the clocks of the
-- processes sharing them never matter. A request larger than a bucket waits for a full
-- bucket and then leaves a debt (the level may go below zero), as the local bucket does.
--
-- KEYS[1]   pause: paused-until, in ms of server time
-- KEYS[2]   slots: sorted set, lease id -> lease expiry (ms of server time)
-- KEYS[3..] one hash {level, at} per bucket; a missing hash is a full bucket
-- ARGV[1]   concurrency slots (0: unlimited)   ARGV[2] lease id   ARGV[3] lease (ms)
-- ARGV[4]   longest pause honoured (ms): a stored pause ending later (written by a process
--           with a larger limit, or an older version) is cut to end that long from now
-- ARGV[5]   requests ahead: waiters of the asking process still in line before this one
-- ARGV[6..] per bucket: capacity, refill per ms, amount, amount ahead
--
-- "Ahead" keeps a process's line first come, first served while its waiters ask side by
-- side: one is granted only if what those before it still need fits too (in each bucket
-- and in the slots), so it never takes capacity its predecessors are refused for. It may
-- count a predecessor Redis has just granted: that costs a refusal and a retry, near the
-- bottom of a bucket only.
--
-- Returns {granted (1/0), wait ms as text (-1: a slot, which cannot be predicted),
--          what blocked (0 pause, -1 slots, i: bucket i), level of each bucket as text}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local function fmt(x) return string.format('%.17g', x) end

local wait, blocked = 0, 0
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
local max_pause = tonumber(ARGV[4])
if paused > now + max_pause then
  -- Cut to this process's limit, once, for everyone: it then ends as a pause would.
  paused = now + max_pause
  redis.call('SET', KEYS[1], fmt(paused), 'PX', math.ceil(max_pause) + 1)
end
if paused > now then wait = paused - now end

local levels = {}
local nbuckets = #KEYS - 2
for i = 1, nbuckets do
  local cap = tonumber(ARGV[4 * i + 2])
  local rate = tonumber(ARGV[4 * i + 3])
  local amount = tonumber(ARGV[4 * i + 4])
  local ahead = tonumber(ARGV[4 * i + 5])
  local h = redis.call('HMGET', KEYS[i + 2], 'level', 'at')
  local level, at = tonumber(h[1]), tonumber(h[2])
  if level == nil or at == nil then
    level = cap
  elseif now > at then
    level = level + (now - at) * rate
  end
  if level > cap then level = cap end
  levels[i] = level
  local need = ahead + math.min(amount, cap)
  if level < need then
    local w = (need - level) / rate
    if w > wait then wait, blocked = w, i end
  end
end

local slots = tonumber(ARGV[1])
if wait <= 0 and slots > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) + tonumber(ARGV[5]) >= slots then wait, blocked = -1, -1 end
end

local reply = {0, fmt(wait), blocked}
if wait == 0 then
  reply[1] = 1
  for i = 1, nbuckets do
    local cap = tonumber(ARGV[4 * i + 2])
    local rate = tonumber(ARGV[4 * i + 3])
    levels[i] = levels[i] - tonumber(ARGV[4 * i + 4])
    redis.call('HSET', KEYS[i + 2], 'level', fmt(levels[i]), 'at', fmt(now))
    -- Once full again the hash says nothing a missing one would not: let it expire.
    redis.call('PEXPIRE', KEYS[i + 2], math.ceil((cap - levels[i]) / rate) + 1000)
  end
  if slots > 0 then
    local lease = tonumber(ARGV[3])
    redis.call('ZADD', KEYS[2], now + lease, ARGV[2])
    redis.call('PEXPIRE', KEYS[2], math.ceil(lease) + 1000)
  end
end
for i = 1, nbuckets do reply[i + 3] = fmt(levels[i]) end
return reply
