-- Record a job's end as RQ 3.0's SimpleWorker does (Job.set_status and save, Result.save,
-- the Finished- or FailedJobRegistry, Job.cleanup, executions.cleanup_execution, the
-- worker's counters), after the job's events, which come ready-made: job_events.py
-- makes their fields. Run again after a reply lost to a restart, it writes nothing.
-- A job taken back from this worker (it was taken for dead) gets nothing. A job that is
-- no longer "started" (cancelled or deleted while it ran) gets its events only: the
-- caller lets RQ's own code end it.
--
-- KEYS[1]      the job's hash
-- KEYS[2]      the worker
-- KEYS[3]      the worker's executions
-- KEYS[4]      the queue's StartedJobRegistry
-- KEYS[5]      the queue's Finished- or FailedJobRegistry
-- KEYS[6]      the job's results stream
-- KEYS[7]      the execution
-- KEYS[8]      the job's executions (ExecutionRegistry)
-- KEYS[9]      the job's dependents
-- KEYS[10]     the job's dependencies
-- KEYS[11...]  the streams the job's events go to
-- ARGV[1]      the job's id
-- ARGV[2]      the execution's id
-- ARGV[3]      the worker's counter to add 1 to (successful_job_count, failed_job_count)
-- ARGV[4]      the job's working time in seconds
-- ARGV[5]      the job's expiry (result_ttl or failure_ttl; 0 or less: none)
-- ARGV[6]      the job's score in the registry of KEYS[5]
-- ARGV[7]      the results stream's expiry: -1 none, '' leave it
-- ARGV[8]      the event streams' expiry
-- ARGV[9]      n, how many job fields follow (field, value, ...): those changed since
--              the start
-- ARGV[10...]  the job's fields, then m and the result entry's m fields, then for each
--              event: the index of its stream in KEYS, k, and its k fields
-- Returns {outcome, how many dependents the job has}: outcome is ended, ended_before,
-- taken_back (nothing written), or not_started (only the events written).

local job, worker, worker_executions, started_registry = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local end_registry, results, execution, job_executions = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local dependents, dependencies = KEYS[9], KEYS[10]
local job_id, execution_id, counter, working_time = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local job_ttl, score, results_ttl = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local events_ttl = tonumber(ARGV[8])
local composite = job_id .. ':' .. execution_id

-- The fields at ARGV[at + 1 ...], whose count is ARGV[at]; and where the next part starts.
local function counted(at)
  local count, fields = tonumber(ARGV[at]), {}
  for i = 1, count do fields[i] = ARGV[at + i] end
  return fields, at + count + 1
end

-- Written before (a reply lost): the job's last result is this execution's.
local last = redis.call('XREVRANGE', results, '+', '-', 'COUNT', 1)[1]
if last then
  for i = 1, #last[2], 2 do
    if last[2][i] == 'execution_id' and last[2][i + 1] == execution_id then
      return {'ended_before', redis.call('SCARD', dependents)}
    end
  end
end

-- Taken back (recovery.taken_back): this worker was taken for dead while the job ran
-- (cut off from Redis longer than its lease), and the job went back to its queue. This
-- late end records nothing and sends no event: the job's next run does.
local status = redis.call('HGET', job, 'status')
if not redis.call('ZSCORE', started_registry, composite) and status
    and status ~= 'canceled' and status ~= 'stopped' then
  redis.call('DEL', execution)
  redis.call('ZREM', job_executions, execution_id)
  redis.call('SREM', worker_executions, composite)
  redis.call('HSET', worker, 'state', 'idle')
  return {'taken_back', 0}
end

local job_fields, at = counted(9)
local result_fields
result_fields, at = counted(at)
-- job_events.write_events: each event, then each stream's expiry.
while at <= #ARGV do
  local stream = KEYS[tonumber(ARGV[at])]
  local fields
  fields, at = counted(at + 1)
  redis.call('XADD', stream, '*', unpack(fields))
end
for i = 11, #KEYS do redis.call('EXPIRE', KEYS[i], events_ttl) end
if status ~= 'started' then
  return {'not_started', 0}
end
-- Job.set_status and Job.save (the fields that changed since the start).
redis.call('HSET', job, unpack(job_fields))
-- Result.save
redis.call('XADD', results, 'MAXLEN', '~', 10, '*', unpack(result_fields))
if results_ttl == '-1' then redis.call('PERSIST', results)
elseif results_ttl ~= '' then redis.call('EXPIRE', results, results_ttl) end
-- FinishedJobRegistry.add / FailedJobRegistry.add
redis.call('ZADD', end_registry, score, job_id)
-- Job.cleanup
if job_ttl > 0 then
  redis.call('EXPIRE', job, job_ttl)
  redis.call('EXPIRE', dependents, job_ttl)
  redis.call('EXPIRE', dependencies, job_ttl)
end
-- executions.cleanup_execution
redis.call('DEL', execution)
redis.call('ZREM', started_registry, composite)
redis.call('ZREM', job_executions, execution_id)
redis.call('SREM', worker_executions, composite)
-- BaseWorker.increment_*_job_count, increment_total_working_time, set_state(IDLE)
redis.call('HINCRBY', worker, counter, 1)
redis.call('HINCRBYFLOAT', worker, 'total_working_time', working_time)
redis.call('HSET', worker, 'state', 'idle')
return {'ended', redis.call('SCARD', dependents)}
