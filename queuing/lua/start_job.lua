-- Start the job at the head of a queue, writing what RQ 3.0's SimpleWorker writes when
-- it dequeues and starts a job (Queue.dequeue_any, executions.prepare_execution,
-- BaseWorker.prepare_job_execution). The caller names the jobs it expects at the head (the
-- first few it last saw there: when other workers took the first, the next is at the
-- head), so that every key is in KEYS; another job there is not started.
-- Called again with the same execution id (a reply lost to a restart), it returns the
-- job that execution started and writes nothing.
--
-- KEYS[1]   the queue
-- KEYS[2]   its intermediate queue
-- KEYS[3]   the worker
-- KEYS[4]   the worker's executions (RQ's index of the executions it runs)
-- KEYS[5]   the queue's StartedJobRegistry
-- KEYS[6]   RQ's suspension flag (`rq suspend`): while it is set, nothing starts
-- KEYS[7]   the first expected job's hash
-- KEYS[8]   its execution
-- KEYS[9]   its executions (ExecutionRegistry)
-- KEYS[10..12], KEYS[13..15]  the same for each further expected job (ARGV[10...])
-- KEYS[#KEYS] when ARGV[8] is '1': a set that must be empty for a start, the dependents of
--           the job the worker just ended, which RQ enqueues before it takes the next job
-- ARGV[1]   the first expected job's id
-- ARGV[2]   a new execution id
-- ARGV[3]   now, in epoch seconds (a float, as RQ's Execution writes it)
-- ARGV[4]   now, in whole epoch seconds (registry scores)
-- ARGV[5]   now, as RQ's ISO text
-- ARGV[6]   the worker's name
-- ARGV[7]   RQ's DEFAULT_WORKER_TTL
-- ARGV[8]   '1' when the last key is the set that must be empty
-- ARGV[9]   how many of the ids first in the queue the reply names
-- ARGV[10...] the further expected jobs' ids
-- Returns {outcome, job id, detail, the ids now first in the queue (up to ARGV[9])}:
--   started   detail: the job's hash as HGETALL gives it
--   gone      the job was deleted while queued: taken off the queue, not started
--   not_hash  its key holds another type (detail): taken off the queue, not started
--   moved     another job is at the head (its id in place of the job id)
--   empty     the queue is empty
--   held      suspended, or dependents wait: nothing taken

local queue, intermediate_queue, worker, worker_executions = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local started_registry, suspended = KEYS[5], KEYS[6]
local execution_id = ARGV[2]
local now_float, now_seconds, now_text = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local worker_name, worker_ttl = ARGV[6], tonumber(ARGV[7])
local must_be_empty = ARGV[8] == '1' and KEYS[#KEYS] or nil
local heads_wanted = tonumber(ARGV[9])
-- The expected jobs: {id, its hash, its execution, its executions}.
local expected = {{ARGV[1], KEYS[7], KEYS[8], KEYS[9]}}
for n = 10, #ARGV do
  local first_key = 7 + 3 * (n - 9)
  expected[#expected + 1] = {ARGV[n], KEYS[first_key], KEYS[first_key + 1], KEYS[first_key + 2]}
end

local function heads(outcome, job_id, detail)
  local reply = {outcome, job_id, detail}
  for _, id in ipairs(redis.call('LRANGE', queue, 0, heads_wanted - 1)) do
    reply[#reply + 1] = id
  end
  return reply
end

for _, candidate in ipairs(expected) do
  if redis.call('SISMEMBER', worker_executions, candidate[1] .. ':' .. execution_id) == 1 then
    return heads('started', candidate[1], redis.call('HGETALL', candidate[2]))
  end
end
if redis.call('EXISTS', suspended) == 1
    or (must_be_empty and redis.call('SCARD', must_be_empty) > 0) then
  return heads('held', ARGV[1], false)
end
local first = redis.call('LINDEX', queue, 0)
if not first then
  return {'empty', ARGV[1], false}
end
local job_id, job, execution, job_executions
for _, candidate in ipairs(expected) do
  if candidate[1] == first then
    job_id, job, execution, job_executions = candidate[1], candidate[2], candidate[3], candidate[4]
  end
end
if not job_id then
  return heads('moved', first, false)
end
local composite = job_id .. ':' .. execution_id

-- Queue.dequeue_any: the job id, into the intermediate queue.
redis.call('LMOVE', queue, intermediate_queue, 'LEFT', 'RIGHT')
local key_type = redis.call('TYPE', job)['ok']
if key_type ~= 'hash' and key_type ~= 'none' then
  redis.call('LREM', intermediate_queue, 1, job_id)
  return heads('not_hash', job_id, key_type)
end
local fields = redis.call('HGETALL', job)
if #fields == 0 then
  redis.call('LREM', intermediate_queue, 1, job_id)
  return heads('gone', job_id, false)
end

-- SimpleWorker.get_heartbeat_ttl(job)
local timeout = tonumber(redis.call('HGET', job, 'timeout') or '')
local ttl
if timeout == -1 then ttl = worker_ttl
elseif timeout and timeout ~= 0 then ttl = math.floor(timeout) + 60
else ttl = worker_ttl + 60 end

-- executions.prepare_execution: Execution.create (its hash, both registries, the
-- worker's index), then the worker's state.
redis.call('HSET', execution, 'id', execution_id, 'job_id', job_id, 'created_at', now_float,
           'last_heartbeat', now_float, 'worker_name', worker_name)
redis.call('EXPIRE', execution, ttl)
redis.call('ZADD', job_executions, now_seconds + ttl + 60, execution_id)
redis.call('EXPIRE', job_executions, ttl + 60)
redis.call('ZADD', started_registry, now_seconds + ttl, composite)
redis.call('SADD', worker_executions, composite)
redis.call('EXPIRE', worker_executions, ttl + 60)
redis.call('HSET', worker, 'state', 'busy')
-- BaseWorker.prepare_job_execution: the worker's heartbeat, the job's, the job started.
redis.call('HSET', worker, 'last_heartbeat', now_text)
redis.call('EXPIRE', worker, ttl)
redis.call('EXPIRE', worker_executions, ttl)
redis.call('HSET', job, 'last_heartbeat', now_text, 'status', 'started',
           'started_at', now_text, 'worker_name', worker_name)
redis.call('PERSIST', job)
redis.call('LREM', intermediate_queue, 1, job_id)
return heads('started', job_id, fields)
