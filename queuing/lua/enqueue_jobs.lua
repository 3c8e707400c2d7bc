-- Write a batch of RQ jobs and push their ids onto the queue, once. Called again with
-- the same batch (a retry after a reply lost to a restart or a stall), it writes
-- nothing: the batch's marker says it is in Redis already.
--
-- KEYS[1]     the set of RQ's queues (rq:queues), which `rq info` lists
-- KEYS[2]     the queue
-- KEYS[3]     the batch's marker
-- KEYS[4...]  the job hashes, one per job
-- ARGV[1]     how long the marker lives, in seconds
-- ARGV[2]     n, how many shared field arguments follow
-- ARGV[3...]  the fields every job shares (field, value, field, value...), then for each
--             job, in KEYS order: its id, its data, its description
-- Returns how many jobs it queued: 0 when the batch was written before.

local queues, queue, marker = KEYS[1], KEYS[2], KEYS[3]
local marker_seconds = tonumber(ARGV[1])
local shared_count = tonumber(ARGV[2])

if not redis.call('SET', marker, '1', 'NX', 'EX', marker_seconds) then
  return 0
end

local fields = {}
for i = 1, shared_count do
  fields[i] = ARGV[2 + i]
end
local data_at, description_at = shared_count + 2, shared_count + 4
fields[shared_count + 1] = 'data'
fields[shared_count + 3] = 'description'

local job_ids = {}
local first_job_arg = 3 + shared_count
for job = 1, #KEYS - 3 do
  local at = first_job_arg + (job - 1) * 3
  job_ids[job] = ARGV[at]
  fields[data_at] = ARGV[at + 1]
  fields[description_at] = ARGV[at + 2]
  redis.call('HSET', KEYS[3 + job], unpack(fields))
end

redis.call('SADD', queues, queue)
redis.call('RPUSH', queue, unpack(job_ids))
return #job_ids
