-- Admit nothing for a while (a provider's 429 retry-after), at most ARGV[2] ms from now;
-- never shortens a pause within that cap, and cuts a longer one (written with a larger
-- cap, or by an older version) down to it.
--
-- KEYS[1] pause (paused-until, ms of server time)   ARGV[1] pause (ms)   ARGV[2] cap (ms)

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cap = tonumber(ARGV[2])
local ms = math.min(math.max(0, tonumber(ARGV[1])), cap)
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current > now + cap then current = 0 end
if now + ms > current then
  redis.call('SET', KEYS[1], string.format('%.17g', now + ms), 'PX', math.ceil(ms) + 1)
end
return 1
