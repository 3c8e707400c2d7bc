"""The seat server SIGKILLed while its worker processes reservations, then started again:
every reservation ends (completed or failed, once), none is left started, and no seat is
sold twice or lost, whatever moment the kill came at."""

from __future__ import annotations

import random
import time

import pytest
import redis
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from queuing import jobs
from queuing.connection import rq_client
from queuing.constants import AVAILABLE_SEATS_KEY, RESERVE_SEAT_QUEUE, SEAT_JOBS_KEY
from tests.processes import wait_until
from tests.servers import Server, http_get

pytestmark = pytest.mark.redis_server

RESERVATIONS = 60
TRIALS = 4
# How long after /process each trial kills the server: from at once to after the queue's
# first jobs, where the seat worker is between jobs or inside one.
KILL_AFTER_SECONDS = (0.0, 0.02, 0.05, 0.1, 0.2)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_a_seat_server_killed_mid_processing_loses_and_doubles_nothing(redis_url, real_redis,
                                                                        running, trial):
    rq_connection = rq_client(redis_url)
    queue = jobs.json_queue(RESERVE_SEAT_QUEUE, rq_connection)
    first = Server.script("100_seat", redis_url)
    running.append(first)
    for _ in range(RESERVATIONS):
        assert http_get(f"http://127.0.0.1:{first.port}/reserve_seat")[0] == 200
    job_ids = queue.get_job_ids()
    assert len(job_ids) == RESERVATIONS
    http_get(f"http://127.0.0.1:{first.port}/process")
    time.sleep(random.Random(trial).choice(KILL_AFTER_SECONDS))  # the moment is the trial
    first.kill()  # SIGKILL, mid-processing

    # A new server joins the same sale (the dead one's lease is still live) and processes.
    second = Server.script("100_seat", redis_url)
    running.append(second)
    http_get(f"http://127.0.0.1:{second.port}/process")
    finished, failed = FinishedJobRegistry(queue=queue), FailedJobRegistry(queue=queue)
    wait_until(lambda: finished.count + failed.count == RESERVATIONS, "every reservation ended",
               timeout=60)
    assert StartedJobRegistry(queue=queue).get_job_ids(cleanup=False) == []
    assert queue.count == 0
    assert sorted(finished.get_job_ids() + failed.get_job_ids(), key=int) == job_ids
    sold = real_redis.scard(SEAT_JOBS_KEY)
    assert sold == len(finished.get_job_ids()) == 50  # each seat once, to a completed job
    assert real_redis.get(AVAILABLE_SEATS_KEY) == "0"
    connection = redis.Redis.from_url(redis_url)
    assert connection.llen(queue.intermediate_queue_key) == 0
