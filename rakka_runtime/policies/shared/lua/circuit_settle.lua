-- Move the shared circuit on evidence from one process: 'open' (its failure count tripped
-- a closed circuit, or its probe failed), 'close' (its probe succeeded), 'free' (its probe
-- ended neutral: give the probe slot back). Evidence gathered under an earlier generation
-- is stale and changes nothing; the reply says what the circuit is now.
--
-- KEYS[1] circuit hash   KEYS[2] probe counter
-- ARGV[1] generation the evidence belongs to   ARGV[2] open | close | free
-- ARGV[3] open duration (ms)
-- Returns {state, generation (text), ms until retry while open (text), 0}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local h = redis.call('HMGET', KEYS[1], 'state', 'gen', 'retry_at')
local state, gen, retry_at = h[1], tonumber(h[2]), tonumber(h[3])
if not state or not gen then
  state, gen, retry_at = 'closed', math.floor(now), nil
  redis.call('HSET', KEYS[1], 'state', state, 'gen', string.format('%.0f', gen))
end

if gen == tonumber(ARGV[1]) then
  local op = ARGV[2]
  if op == 'open' and state ~= 'open' then
    state, gen, retry_at = 'open', gen + 1, now + tonumber(ARGV[3])
    redis.call('HSET', KEYS[1], 'state', state, 'gen', string.format('%.0f', gen),
               'retry_at', string.format('%.17g', retry_at))
    redis.call('DEL', KEYS[2])
  elseif op == 'close' and state == 'half_open' then
    state, gen = 'closed', gen + 1
    redis.call('HSET', KEYS[1], 'state', state, 'gen', string.format('%.0f', gen))
    redis.call('DEL', KEYS[2])
  elseif op == 'free' and state == 'half_open' then
    if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
  end
end

local left = 0
if state == 'open' then left = math.max(0, retry_at - now) end
return {state, string.format('%.0f', gen), string.format('%.17g', left), 0}
