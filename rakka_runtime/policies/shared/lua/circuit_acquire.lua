-- Ask the shared circuit for leave to make one call.
--
-- An open circuit past its retry time turns half-open here (lazily, on the first call
-- that asks; no timer). A half-open circuit lets at most ARGV[1] probes run at once
-- across every process; the probe counter expires after ARGV[2] ms so the probe of a
-- process that died does not block the circuit forever. Every state change increments
-- the generation, which starts from the server's clock (ms) so that it keeps growing
-- across a Redis restart that lost the hash.
--
-- KEYS[1] circuit hash {state, gen, retry_at (ms of server time)}   KEYS[2] probe counter
-- ARGV[1] half-open probe limit   ARGV[2] probe lease (ms)
-- Returns {state, generation (text), ms until retry while open (text), probe granted 1/0}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local h = redis.call('HMGET', KEYS[1], 'state', 'gen', 'retry_at')
local state, gen, retry_at = h[1], tonumber(h[2]), tonumber(h[3])
if not state or not gen then
  state, gen, retry_at = 'closed', math.floor(now), nil
  redis.call('HSET', KEYS[1], 'state', state, 'gen', string.format('%.0f', gen))
end

if state == 'open' and (retry_at == nil or now >= retry_at) then
  state, gen = 'half_open', gen + 1
  redis.call('HSET', KEYS[1], 'state', state, 'gen', string.format('%.0f', gen))
  redis.call('HDEL', KEYS[1], 'retry_at')
  redis.call('DEL', KEYS[2])
end

local granted = 0
if state == 'half_open' then
  local probes = tonumber(redis.call('GET', KEYS[2]) or '0')
  if probes < tonumber(ARGV[1]) then
    redis.call('INCR', KEYS[2])
    redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[2])))
    granted = 1
  end
end

local left = 0
if state == 'open' then left = retry_at - now end
return {state, string.format('%.0f', gen), string.format('%.17g', left), granted}
