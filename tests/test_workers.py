"""The processors' workers, lean or on RQ's own code: what a creator hears, and when."""

from __future__ import annotations

import fakeredis
import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from queuing import job_batch, job_events, jobs, workers

GOOD = {"phoneNumber": "4153518743", "message": "hi"}
BLACKLISTED = {"phoneNumber": "4153518780", "message": "hi"}


@pytest.mark.parametrize("worker_class", [workers.ProcessorWorker, workers.LeanProcessorWorker],
                         ids=["rq", "lean"])
@pytest.mark.parametrize("func", ["queuing.notifications.push_tracked_notification",
                                  "tests.fault_jobs.slow_notification"], ids=["fast", "slow"])
def test_a_creator_hears_a_jobs_end_only_once_rq_has_recorded_it(fake_server, monkeypatch,
                                                                  worker_class, func):
    """A creator that hears "completed" or "failed" and then asks RQ must find the job
    finished or failed, never still started, whether the job was quick or slow."""
    connection = fakeredis.FakeRedis(server=fake_server)
    statuses_when_heard: list[tuple[str, str]] = []
    write = job_events._write_through_outages

    def spy(client, events):
        for _stream, event in events:
            if event.is_final:
                job = Job.fetch(event.job_id, connection=connection,
                                serializer=JSONSerializer)
                statuses_when_heard.append((event.kind, job.get_status()))
        write(client, events)

    monkeypatch.setattr(job_events, "_write_through_outages", spy)
    queue = jobs.json_queue("q", connection)
    with job_batch.JobBatch(queue) as batch:
        batch.add(func, GOOD, job_id="good")
        batch.add(func, BLACKLISTED, job_id="bad")
        worker_class(["q"], connection=connection, serializer=JSONSerializer).work(burst=True)
        heard = {event.job_id: event.kind for event in batch.events(block_ms=100)
                 if event.is_final}
    assert heard == {"good": "completed", "bad": "failed"}
    assert all(status == kind.replace("completed", "finished")
               for kind, status in statuses_when_heard), statuses_when_heard
