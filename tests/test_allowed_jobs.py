"""Workers run only the project's own job functions and callbacks, whoever queued the job."""

from __future__ import annotations

import fakeredis
import pytest
from rq import Callback, Queue, SimpleWorker
from rq.job import JobStatus
from rq.serializers import JSONSerializer

import allowed_jobs
from allowed_jobs import AllowedJob


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
    job, error = run_one(connection, f="notifications.push_notification",
                         args=({"phoneNumber": "4153518743", "message": "hi"},),
                         **{callback: Callback("os.system")})
    assert job.get_status() == JobStatus.FAILED
    assert "os.system" in error
    assert not target.exists()


def test_a_method_of_a_planted_object_is_refused(connection):
    queue = Queue("hostile", connection=connection, serializer=JSONSerializer)
    job = queue.enqueue("notifications.push_notification", {"phoneNumber": "1", "message": "m"})
    # RQ's job data is [func_name, instance, args, kwargs]: plant an instance.
    connection.hset(job.key, "data", b'["clear", {"a": 1}, [], {}]')
    SimpleWorker([queue], connection=connection, serializer=JSONSerializer,
                 job_class=AllowedJob).work(burst=True)
    assert job.get_status() == JobStatus.FAILED


def test_our_own_job_runs(connection, capsys):
    job, _ = run_one(connection, f="notifications.push_notification",
                     args=({"phoneNumber": "4153518743", "message": "hi"},))
    assert job.get_status() == JobStatus.FINISHED
    assert "Sending notification to 4153518743, with message: hi" in capsys.readouterr().out


def test_the_operator_may_allow_more(monkeypatch, connection):
    monkeypatch.setenv(allowed_jobs.EXTRA_ENV, "builtins.len, builtins.abs")
    job, _ = run_one(connection, f="builtins.len", args=([1, 2],))
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == 2
