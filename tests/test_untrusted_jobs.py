"""Workers run only the project's own job functions and callbacks, whoever queued the job."""

from __future__ import annotations

import pickle
import subprocess

import fakeredis
import pytest
from rq import Callback, Queue, SimpleWorker
from rq.job import JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import import_attribute

from queuing import job_batch, job_events, jobs, settings, untrusted_jobs
from queuing.job_batch import JobBatch
from queuing.untrusted_jobs import AllowedJob, DataOnlyPickle, SkipsUnreadableJobs


@pytest.fixture
def connection(fake_server):
    return fakeredis.FakeRedis(server=fake_server)


def run_one(connection, **enqueue) -> tuple:
    """Enqueue one JSON job as anyone with access to Redis could, and let an RQ
    SimpleWorker with AllowedJob run it; the job and its failure text."""
    queue = Queue("hostile", connection=connection, serializer=JSONSerializer)
    job = queue.enqueue(**enqueue)
    SimpleWorker([queue], connection=connection, serializer=JSONSerializer,
                 job_class=AllowedJob).work(burst=True)
    job = AllowedJob.fetch(job.id, connection=connection, serializer=JSONSerializer)
    result = job.latest_result()
    return job, (result.exc_string if result else "")


@pytest.mark.parametrize("func", ["os.system", "builtins.exec", "subprocess.getoutput",
                                  "posix.system", "builtins.eval"])
def test_a_job_naming_a_function_that_is_not_ours_fails_and_never_runs(connection, tmp_path,
                                                                        func):
    target = tmp_path / "pwned"
    job, error = run_one(connection, f=func, args=(f"touch {target}",))
    assert job.get_status() == JobStatus.FAILED
    assert "not one of this project's job functions" in error
    assert not target.exists()


@pytest.mark.parametrize("callback", ["on_success", "on_failure", "on_stopped"])
def test_a_job_with_a_callback_that_is_not_ours_fails_and_the_callback_never_runs(
        connection, tmp_path, callback):
    target = tmp_path / "pwned"
    job, error = run_one(connection, f="queuing.notifications.push_notification",
                         args=({"phoneNumber": "4153518743", "message": "hi"},),
                         **{callback: Callback("os.system")})
    assert job.get_status() == JobStatus.FAILED
    assert "os.system" in error
    assert not target.exists()


def test_a_method_of_a_planted_object_is_refused(connection):
    queue = Queue("hostile", connection=connection, serializer=JSONSerializer)
    job = queue.enqueue("queuing.notifications.push_notification",
                        {"phoneNumber": "1", "message": "m"})
    # RQ's job data is [func_name, instance, args, kwargs]: plant an instance.
    connection.hset(job.key, "data", b'["clear", {"a": 1}, [], {}]')
    SimpleWorker([queue], connection=connection, serializer=JSONSerializer,
                 job_class=AllowedJob).work(burst=True)
    assert job.get_status() == JobStatus.FAILED


def test_our_own_job_runs(connection, capsys):
    job, _ = run_one(connection, f="queuing.notifications.push_notification",
                     args=({"phoneNumber": "4153518743", "message": "hi"},))
    assert job.get_status() == JobStatus.FINISHED
    assert "Sending notification to 4153518743, with message: hi" in capsys.readouterr().out


def test_the_operator_may_allow_more(monkeypatch, connection):
    monkeypatch.setenv(settings.EXTRA_JOB_FUNCTIONS_ENV, "builtins.len, builtins.abs")
    job, _ = run_one(connection, f="builtins.len", args=([1, 2],))
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == 2



def test_the_allowed_names_follow_the_setting_as_it_changes(monkeypatch, connection):
    """The parsed setting is cached by its text: a worker still sees each change."""
    monkeypatch.setenv(settings.EXTRA_JOB_FUNCTIONS_ENV, "builtins.len")
    assert run_one(connection, f="builtins.len", args=([1],))[0].get_status() == JobStatus.FINISHED
    monkeypatch.setenv(settings.EXTRA_JOB_FUNCTIONS_ENV, "builtins.abs")
    assert run_one(connection, f="builtins.len", args=([1],))[0].get_status() == JobStatus.FAILED
    monkeypatch.delenv(settings.EXTRA_JOB_FUNCTIONS_ENV)
    assert untrusted_jobs.allowed_names() == untrusted_jobs.JOB_FUNCTIONS
    assert untrusted_jobs.allowed_names({settings.EXTRA_JOB_FUNCTIONS_ENV: " a.b, "}) == (
        untrusted_jobs.JOB_FUNCTIONS | {"a.b"})

# -- A job that cannot be read -------------------------------------------------------------

class GuardedWorker(SkipsUnreadableJobs, SimpleWorker):
    pass


POISON = [("result_ttl", "abc"), ("timeout", "x"), ("created_at", "bad"),
          ("dependency_ids", "{"), ("status", "nonsense"), ("failure_ttl", "x")]


@pytest.mark.parametrize(("field", "value"), POISON)
def test_a_job_hash_that_cannot_be_read_fails_with_one_line_and_the_worker_goes_on(
        connection, capsys, field, value):
    queue = Queue("poisoned", connection=connection, serializer=JSONSerializer)
    with JobBatch(queue) as batch:
        bad = batch.add("queuing.notifications.push_notification",
                        {"phoneNumber": "4153518743", "message": "bad"}, job_id="1")
        good = batch.add("queuing.notifications.push_notification",
                         {"phoneNumber": "4153518743", "message": "good"}, job_id="2")
        connection.hset(bad.key, field, value)
        reported = []
        worker = GuardedWorker([queue], connection=connection, serializer=JSONSerializer,
                               job_class=AllowedJob)
        worker.report_unreadable = lambda job_id, reason: reported.append(f"{job_id}: {reason}")
        worker.work(burst=True)
        events = list(batch.events(block_ms=100))
    assert good.get_status() == JobStatus.FINISHED
    assert "with message: good" in capsys.readouterr().out
    assert len(reported) == 1 and reported[0].startswith("1: its job cannot be read (")
    assert "\n" not in reported[0]
    assert "1" in FailedJobRegistry(queue=queue).get_job_ids()
    assert connection.llen(queue.intermediate_queue_key) == 0
    assert [(e.job_id, e.kind) for e in events if e.job_id == "1"] == [("1", "failed")]


def test_a_job_key_of_the_wrong_type_fails_and_the_worker_goes_on(connection):
    queue = Queue("poisoned", connection=connection, serializer=JSONSerializer)
    connection.set("rq:job:666", "not a hash")
    connection.rpush(queue.key, "666")
    connection.sadd(queue.redis_queues_keys, queue.key)
    good = queue.enqueue("queuing.notifications.push_notification",
                         {"phoneNumber": "4153518743", "message": "good"})
    reported = []
    worker = GuardedWorker([queue], connection=connection, serializer=JSONSerializer,
                           job_class=AllowedJob)
    worker.report_unreadable = lambda job_id, reason: reported.append(f"{job_id}: {reason}")
    worker.work(burst=True)
    assert good.get_status() == JobStatus.FINISHED
    assert [line.split(" (")[0] for line in reported] == ["666: its job cannot be read"]


# -- Pickle, for RQ's cron jobs: plain data only -------------------------------------------

class Exploit:
    """Unpickling this runs a command: what someone who can write to Redis plants."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


def test_a_pickled_job_of_plain_data_runs(connection):
    queue = Queue("tick", connection=connection)  # RQ's default serializer, as RQ's cron
    job = queue.enqueue("builtins.len", [1, 2, 3])
    SimpleWorker([queue], connection=connection, serializer=DataOnlyPickle,
                 job_class=AllowedJob).work(burst=True)
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value() == 3


def test_a_planted_pickle_runs_nothing_in_the_pickle_reading_worker(connection, tmp_path):
    marker = tmp_path / "pwned"
    queue = Queue("tick", connection=connection)
    job = queue.enqueue("builtins.len", Exploit(marker))
    SimpleWorker([queue], connection=connection, serializer=DataOnlyPickle,
                 job_class=AllowedJob).work(burst=True)
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match=r"subprocess\.call is not plain data"):
        DataOnlyPickle.loads(pickle.dumps(Exploit(marker)))
    pickle.loads(pickle.dumps(Exploit(marker)))  # control: plain pickle runs it
    assert marker.exists()


def test_rqs_maintenance_meeting_an_unreadable_job_fails_it_once_and_goes_on(connection):
    """Another worker's maintenance looks at the jobs in the intermediate list (taken, not
    yet started) while the worker that took a bad one fails it: it is failed once."""
    from queuing.recovering_worker import RecoveringWorker
    from queuing.untrusted_jobs import GuardedQueue

    class Guarded(RecoveringWorker):
        queue_class = GuardedQueue

    queue = Queue("poisoned", connection=connection, serializer=JSONSerializer)
    job = queue.enqueue("queuing.notifications.push_notification",
                        {"phoneNumber": "1", "message": "m"})
    connection.hset(job.key, "result_ttl", "abc")
    connection.lmove(queue.key, queue.intermediate_queue_key)  # taken by a worker
    reported = []
    worker = Guarded(["poisoned"], connection=connection, serializer=JSONSerializer)
    worker.report_unreadable = lambda job_id, reason: reported.append(job_id)
    worker.clean_registries()  # RQ's maintenance: its intermediate list clean-up included
    assert reported == [job.id]
    assert job.id in FailedJobRegistry(queue=queue).get_job_ids()
    assert untrusted_jobs.fail_unreadable(queue, job.id, ValueError("again")) is None


def test_a_job_queued_under_a_former_module_name_still_runs_with_its_callbacks(connection):
    """Jobs queued before the library moved into the queuing package name
    ``notifications.push_tracked_notification`` and ``job_events.job_completed``."""
    reply_to = job_batch.new_reply_stream()
    job, error = run_one(connection, f="notifications.push_tracked_notification",
                         args=({"phoneNumber": "4153518743", "message": "hi"},),
                         meta={job_events.REPLY_TO: reply_to},
                         on_success=Callback("job_events.job_completed"))
    assert job.get_status() == JobStatus.FINISHED, error
    kinds = [job_events.JobEvent.from_fields(fields).kind
             for _, fields in connection.xrange(reply_to)]
    assert kinds[-1] == job_events.COMPLETED


def test_a_former_name_of_a_function_that_is_not_ours_is_still_refused(connection):
    job, error = run_one(connection, f="notifications.os.system", args=("true",))
    assert job.get_status() == JobStatus.FAILED
    assert "not one of this project's job functions" in error


# -- The short names of batched jobs -------------------------------------------------------

@pytest.mark.parametrize(("short", "full"), sorted(jobs.SHORT_NAMES.items()))
def test_a_short_name_is_one_of_our_functions_and_imports_as_that_function(short, full):
    assert full in untrusted_jobs.JOB_FUNCTIONS
    assert untrusted_jobs.current_name(short) == full
    assert import_attribute(short) is import_attribute(full)  # RQ's import, no job class


def test_a_job_named_by_short_names_runs_with_its_callbacks(connection, capsys):
    reply_to = job_batch.new_reply_stream()
    job, error = run_one(connection, f="queuing.jobs.tracked",
                         args=({"phoneNumber": "4153518743", "message": "hi"},),
                         meta={job_events.REPLY_TO: reply_to},
                         on_success=Callback("queuing.jobs.completed"),
                         on_failure=Callback("queuing.jobs.failed"))
    assert job.get_status() == JobStatus.FINISHED, error
    assert "Sending notification to 4153518743, with message: hi" in capsys.readouterr().out
    kinds = [job_events.JobEvent.from_fields(fields).kind
             for _, fields in connection.xrange(reply_to)]
    assert kinds == [job_events.PROGRESS, job_events.PROGRESS, job_events.COMPLETED]


@pytest.mark.parametrize("func", ["queuing.jobs.json_queue", "queuing.jobs.redis.Redis",
                                  "queuing.jobs.import_attribute", "queuing.jobs.nothing"])
def test_the_jobs_module_lends_no_other_name(connection, func):
    job, error = run_one(connection, f=func, args=("x",))
    assert job.get_status() == JobStatus.FAILED
    assert "not one of this project's job functions" in error
    with pytest.raises(AttributeError):
        jobs.__getattr__("nothing")
