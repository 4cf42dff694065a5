-- Reconcile an admitted request: give back (or charge) the difference between what it
-- reserved and what it used, and free its concurrency slot.
--
-- A settle retried after a Redis stall (the first try timed out: it may or may not have
-- run) or undoing a reservation whose reply was lost sets ARGV[2] = '1': the deltas then
-- apply only if the lease was still there, so each applies at most once.
--
-- KEYS[1]   slots (sorted set of leases)   KEYS[2..] bucket hashes {level, at}
-- ARGV[1]   lease id ('' when it holds none)   ARGV[2] '1': only if the lease was held
-- ARGV[3..] per bucket: capacity, refill per ms, amount to add (negative: a charge)
-- Returns 1 when the deltas were applied, 0 when skipped.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local function fmt(x) return string.format('%.17g', x) end

if ARGV[1] ~= '' then
  local held = redis.call('ZREM', KEYS[1], ARGV[1])
  if held == 0 and ARGV[2] == '1' then return 0 end
end
for i = 1, #KEYS - 1 do
  local cap = tonumber(ARGV[3 * i])
  local rate = tonumber(ARGV[3 * i + 1])
  local delta = tonumber(ARGV[3 * i + 2])
  if delta ~= 0 then
    local key = KEYS[i + 1]
    local h = redis.call('HMGET', key, 'level', 'at')
    local level, at = tonumber(h[1]), tonumber(h[2])
    if level == nil or at == nil then
      level = cap
    elseif now > at then
      level = level + (now - at) * rate
    end
    level = math.min(cap, level + delta)
    redis.call('HSET', key, 'level', fmt(level), 'at', fmt(now))
    redis.call('PEXPIRE', key, math.ceil((cap - level) / rate) + 1000)
  end
end
return 1
