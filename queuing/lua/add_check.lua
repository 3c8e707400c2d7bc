-- Store a new uptime check, unless its owner already has as many as they may: the count
-- and the write are one step, so two requests at once cannot make one check too many.
-- The id is taken before the script runs, so a second run of the same call (redis-py
-- retries a command after a timeout) finds the check stored and stores nothing more.
--
-- KEYS[1]  the check's hash
-- KEYS[2]  the set of every check's id
-- KEYS[3]  the set of the owner's check ids (absent for a check without an owner)
-- ARGV[1]  the check's id
-- ARGV[2]  how many checks the owner may have; "" for no limit
-- ARGV[3..] the check's fields and values, alternately
-- Returns 1 when the check is stored, 0 when the owner has too many already.

local check, all_checks, owner_checks = KEYS[1], KEYS[2], KEYS[3]
local check_id, max_checks = ARGV[1], tonumber(ARGV[2])

if owner_checks then
  if redis.call('SISMEMBER', owner_checks, check_id) == 1 then
    return 1
  end
  if max_checks and redis.call('SCARD', owner_checks) >= max_checks then
    return 0
  end
  redis.call('SADD', owner_checks, check_id)
end
redis.call('HSET', check, unpack(ARGV, 3))
redis.call('SADD', all_checks, check_id)
return 1
