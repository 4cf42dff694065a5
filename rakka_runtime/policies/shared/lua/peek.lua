-- Read the shared state without changing it (tests, metrics).
--
-- KEYS[1] pause   KEYS[2] slots   KEYS[3..] bucket hashes
-- ARGV    per bucket: capacity, refill per ms
-- Returns {pause left (ms, text), live leases, level of each bucket as text}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function fmt(x) return string.format('%.17g', x) end
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
local reply = {fmt(math.max(0, paused - now)), redis.call('ZCOUNT', KEYS[2], now, '+inf')}
for i = 1, #KEYS - 2 do
  local cap, rate = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local h = redis.call('HMGET', KEYS[i + 2], 'level', 'at')
  local level, at = tonumber(h[1]), tonumber(h[2])
  if level == nil or at == nil then
    level = cap
  elseif now > at then
    level = level + (now - at) * rate
  end
  reply[i + 2] = fmt(math.min(cap, level))
end
return reply
