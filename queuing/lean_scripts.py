"""The two Lua scripts of lean_worker: RQ 3.0's own writes when a job starts and ends.

Each block says which RQ method wrote those commands; tests/test_lean_worker.py runs the
same jobs through RQ's SimpleWorker and through lean_worker and compares what each leaves
in Redis, so a change of RQ's bookkeeping fails a test instead of drifting silently.
Values that need Python (times, ids, RQ's encoding of a result) come in as arguments.
"""

# start_job(keys, args) takes the next job of a queue and records it started.
# keys: 1 the queue, 2 its intermediate queue, 3 the worker, 4 the worker's executions,
#       5 the queue's StartedJobRegistry.
# args: 1 the prefix of job keys, 2 a new execution id, 3 now as epoch seconds (float),
#       4 now as whole epoch seconds, 5 now as RQ's ISO text, 6 the worker's name,
#       7 RQ's DEFAULT_WORKER_TTL.
# Returns false (no job), {job id, the job's hash as HGETALL gives it}, or {job id, {},
# the type of its key} when that key is not a hash (nothing is recorded for it).
_START_FUNCTION = """
local function start_job(keys, args)
  -- Called again after a reply lost to a Redis restart: the job this execution started.
  for _, member in ipairs(redis.call('SMEMBERS', keys[4])) do
    local started_id, execution_id = string.match(member, '^(.*):([^:]*)$')
    if execution_id == args[2] then
      return {started_id, redis.call('HGETALL', args[1] .. started_id)}
    end
  end
  -- Queue.dequeue_any: the next job id, into the intermediate queue.
  local job_id = redis.call('LMOVE', keys[1], keys[2], 'LEFT', 'RIGHT')
  if not job_id then return false end
  local job_key = args[1] .. job_id
  local key_type = redis.call('TYPE', job_key)['ok']
  if key_type ~= 'hash' and key_type ~= 'none' then  -- not a job: the caller fails it
    redis.call('LREM', keys[2], 1, job_id)
    return {job_id, {}, key_type}
  end
  local fields = redis.call('HGETALL', job_key)
  if #fields == 0 then  -- deleted while queued: nothing to run
    redis.call('LREM', keys[2], 1, job_id)
    return {job_id, fields}
  end
  -- SimpleWorker.get_heartbeat_ttl(job)
  local timeout = tonumber(redis.call('HGET', job_key, 'timeout') or '')
  local ttl
  if timeout == -1 then ttl = tonumber(args[7])
  elseif timeout and timeout ~= 0 then ttl = math.floor(timeout) + 60
  else ttl = tonumber(args[7]) + 60 end
  local now = tonumber(args[4])
  local execution_key = 'rq:execution:' .. job_id .. ':' .. args[2]
  local composite = job_id .. ':' .. args[2]
  -- executions.prepare_execution: Execution.create (save, both registries, the
  -- worker's index), then the worker's state.
  redis.call('HSET', execution_key, 'id', args[2], 'job_id', job_id, 'created_at', args[3],
             'last_heartbeat', args[3], 'worker_name', args[6])
  redis.call('EXPIRE', execution_key, ttl)
  redis.call('ZADD', 'rq:executions:' .. job_id, now + ttl + 60, args[2])
  redis.call('EXPIRE', 'rq:executions:' .. job_id, ttl + 60)
  redis.call('ZADD', keys[5], now + ttl, composite)
  redis.call('SADD', keys[4], composite)
  redis.call('EXPIRE', keys[4], ttl + 60)
  redis.call('HSET', keys[3], 'state', 'busy')
  -- BaseWorker.prepare_job_execution: the worker's heartbeat, the job's, the job started.
  redis.call('HSET', keys[3], 'last_heartbeat', args[5])
  redis.call('EXPIRE', keys[3], ttl)
  redis.call('EXPIRE', keys[4], ttl)
  redis.call('HSET', job_key, 'last_heartbeat', args[5], 'status', 'started',
             'started_at', args[5], 'worker_name', args[6])
  redis.call('PERSIST', job_key)
  redis.call('LREM', keys[2], 1, job_id)
  return {job_id, fields}
end
"""

# KEYS and ARGV: start_job's keys and args.
START_JOB = _START_FUNCTION + "return start_job(KEYS, ARGV)"

# KEYS: 1 the job, 2 the worker, 3 the worker's executions, 4 the StartedJobRegistry,
#       5 the Finished- or FailedJobRegistry, 6 the job's results stream, 7 the execution,
#       8 the job's executions, 9 the job's dependents, 10 the job's dependencies.
# ARGV: 1 JSON: job_id, job (fields to HSET), result (fields of the results entry),
#       result_ttl (the results entry's expiry, or null), ttl (the job's: result_ttl or
#       failure_ttl), score (in the registry, or null), counter,
#       working_time, composite, execution_id, events ([stream, fields]), streams,
#       events_ttl, and next: null, or start_job's keys and args to start the next job.
# Returns {how many dependents the job has (read with its status, so none is missed),
#          start_job's reply for the next job, or false}.
END_JOB = _START_FUNCTION + """
local p = cjson.decode(ARGV[1])
-- Called again after a reply lost to a Redis restart: the end is written once.
if redis.call('ZSCORE', KEYS[4], p.composite) then
  -- job_events: the job's events, then the reply streams' expiry.
  for _, event in ipairs(p.events) do redis.call('XADD', event[1], '*', unpack(event[2])) end
  for _, stream in ipairs(p.streams) do redis.call('EXPIRE', stream, p.events_ttl) end
  -- Job.set_status and Job.save (the fields that changed since the start).
  redis.call('HSET', KEYS[1], unpack(p.job))
  -- Result.save
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', 10, '*', unpack(p.result))
  if p.result_ttl == -1 then redis.call('PERSIST', KEYS[6])
  elseif p.result_ttl ~= cjson.null then redis.call('EXPIRE', KEYS[6], p.result_ttl) end
  -- FinishedJobRegistry.add / FailedJobRegistry.add
  if p.score ~= cjson.null then redis.call('ZADD', KEYS[5], p.score, p.job_id) end
  -- Job.cleanup
  if p.ttl > 0 then
    redis.call('EXPIRE', KEYS[1], p.ttl)
    redis.call('EXPIRE', KEYS[9], p.ttl)
    redis.call('EXPIRE', KEYS[10], p.ttl)
  end
  -- executions.cleanup_execution
  redis.call('DEL', KEYS[7])
  redis.call('ZREM', KEYS[4], p.composite)
  redis.call('ZREM', KEYS[8], p.execution_id)
  redis.call('SREM', KEYS[3], p.composite)
  -- BaseWorker.increment_*_job_count, increment_total_working_time, set_state(IDLE)
  redis.call('HINCRBY', KEYS[2], p.counter, 1)
  redis.call('HINCRBYFLOAT', KEYS[2], 'total_working_time', p.working_time)
  redis.call('HSET', KEYS[2], 'state', 'idle')
end
local dependents = redis.call('SCARD', KEYS[9])
if p.next == cjson.null then return {dependents, false} end
return {dependents, start_job(p.next[1], p.next[2])}
"""
