-- Create a hash only if it does not exist yet: two sign-ups with the same phone number
-- at once make one user, and neither overwrites the other's password.
-- KEYS[1]: the hash.  ARGV: field, value, field, value, ...
-- Returns 1 when created, 0 when the hash was already there.
local hash_key = KEYS[1]
if redis.call('EXISTS', hash_key) == 1 then
    return 0
end
redis.call('HSET', hash_key, unpack(ARGV))
return 1
