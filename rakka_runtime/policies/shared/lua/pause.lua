-- Admit nothing for a while (a provider's 429 retry-after); never shortens a pause.
--
-- KEYS[1] pause (paused-until, ms of server time)   ARGV[1] pause (ms)

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local ms = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + ms > current then
  redis.call('SET', KEYS[1], string.format('%.17g', now + ms), 'PX', math.ceil(ms) + 1)
end
return 1
