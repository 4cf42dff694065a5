-- Extend the leases of concurrency slots this process still holds, so only the slots of a
-- process that stopped renewing (it died) expire.
--
-- KEYS[1] slots (sorted set of leases)   ARGV[1] lease (ms)   ARGV[2..] lease ids
-- Returns how many of the leases were still there.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local lease = tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease, ARGV[i])
end
if renewed > 0 then redis.call('PEXPIRE', KEYS[1], math.ceil(lease) + 1000) end
return renewed
