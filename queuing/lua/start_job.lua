-- Start the job at the head of a queue, writing what RQ 3.0's SimpleWorker writes when
-- it dequeues and starts a job (Queue.dequeue_any, executions.prepare_execution,
-- BaseWorker.prepare_job_execution). The caller names the job it expects at the head, so
-- that every key is in KEYS; another job there is not started, its id is returned.
-- Called again with the same execution id (a reply lost to a restart), it returns the
-- job that execution started and writes nothing.
--
-- KEYS[1]   the queue
-- KEYS[2]   its intermediate queue
-- KEYS[3]   the worker
-- KEYS[4]   the worker's executions (RQ's index of the executions it runs)
-- KEYS[5]   the queue's StartedJobRegistry
-- KEYS[6]   RQ's suspension flag (`rq suspend`): while it is set, nothing starts
-- KEYS[7]   the expected job's hash
-- KEYS[8]   its execution
-- KEYS[9]   its executions (ExecutionRegistry)
-- KEYS[10]  optional, a set that must be empty for a start: the dependents of the job
--           the worker just ended, which RQ enqueues before it takes the next job
-- ARGV[1]   the expected job's id
-- ARGV[2]   a new execution id
-- ARGV[3]   now, in epoch seconds (a float, as RQ's Execution writes it)
-- ARGV[4]   now, in whole epoch seconds (registry scores)
-- ARGV[5]   now, as RQ's ISO text
-- ARGV[6]   the worker's name
-- ARGV[7]   RQ's DEFAULT_WORKER_TTL
-- Returns {outcome, job id, detail, the id now at the head of the queue or false}:
--   started   detail: the job's hash as HGETALL gives it
--   gone      the job was deleted while queued: taken off the queue, not started
--   not_hash  its key holds another type (detail): taken off the queue, not started
--   moved     another job is at the head (its id in place of the job id)
--   empty     the queue is empty
--   held      suspended, or dependents wait: nothing taken

local queue, intermediate_queue, worker, worker_executions = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local started_registry, suspended = KEYS[5], KEYS[6]
local job, execution, job_executions, must_be_empty = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local job_id, execution_id = ARGV[1], ARGV[2]
local now_float, now_seconds, now_text = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local worker_name, worker_ttl = ARGV[6], tonumber(ARGV[7])
local composite = job_id .. ':' .. execution_id

local function head()
  return redis.call('LINDEX', queue, 0)
end

if redis.call('SISMEMBER', worker_executions, composite) == 1 then
  return {'started', job_id, redis.call('HGETALL', job), head()}
end
if redis.call('EXISTS', suspended) == 1
    or (must_be_empty and redis.call('SCARD', must_be_empty) > 0) then
  return {'held', job_id, false, head()}
end
local first = head()
if not first then
  return {'empty', job_id, false, false}
end
if first ~= job_id then
  return {'moved', first, false, first}
end

-- Queue.dequeue_any: the job id, into the intermediate queue.
redis.call('LMOVE', queue, intermediate_queue, 'LEFT', 'RIGHT')
local key_type = redis.call('TYPE', job)['ok']
if key_type ~= 'hash' and key_type ~= 'none' then
  redis.call('LREM', intermediate_queue, 1, job_id)
  return {'not_hash', job_id, key_type, head()}
end
local fields = redis.call('HGETALL', job)
if #fields == 0 then
  redis.call('LREM', intermediate_queue, 1, job_id)
  return {'gone', job_id, false, head()}
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
return {'started', job_id, fields, head()}
