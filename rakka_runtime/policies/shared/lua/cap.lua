-- Lower a bucket to what the provider says remains (x-ratelimit-remaining-*); never raise it.
--
-- KEYS[1] bucket hash {level, at}   ARGV[1] capacity   ARGV[2] refill per ms   ARGV[3] remaining

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cap, rate, remaining = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'level', 'at')
local level, at = tonumber(h[1]), tonumber(h[2])
if level == nil or at == nil then
  level = cap
elseif now > at then
  level = math.min(cap, level + (now - at) * rate)
end
if level > remaining then
  redis.call('HSET', KEYS[1], 'level', string.format('%.17g', remaining),
             'at', string.format('%.17g', now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((cap - remaining) / rate) + 1000)
end
return 1
