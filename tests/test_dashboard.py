"""rq-dashboard reads the course's jobs as any RQ job: with their names (RQ's description)."""

from __future__ import annotations

import json

import pytest
import rq_dashboard
from flask import Flask
from rq.serializers import JSONSerializer

from queuing import jobs, notifications
from queuing.connection import rq_client
from queuing.constants import PUSH_NOTIFICATION_QUEUE_2
from queuing.job_batch import JobBatch

pytestmark = pytest.mark.redis_server

DATA = {"phoneNumber": "4153518743", "message": "This is the code 4321 to verify your account"}


def dashboard(redis_url: str, monkeypatch):
    """rq-dashboard as the Procfile runs it (``--json``), in this process."""
    monkeypatch.setattr(rq_dashboard.web.config, "serializer", JSONSerializer)
    app = Flask(__name__)
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint)
    return app.test_client()


def test_the_dashboard_lists_batched_jobs_with_their_names(redis_url, monkeypatch):
    connection = rq_client(redis_url)
    queue = jobs.json_queue(PUSH_NOTIFICATION_QUEUE_2, connection)
    with JobBatch(queue) as batch:
        [job_id] = batch.add_many(notifications.push_tracked_notification, [(DATA,)])
        client = dashboard(redis_url, monkeypatch)
        page = client.get(f"/0/data/jobs/{PUSH_NOTIFICATION_QUEUE_2}/queued/8/asc/1.json")
        assert page.status_code == 200
        [listed] = json.loads(page.data)["jobs"]
        # A batched job's name: RQ's form of the call, shortened to the function and the
        # recipient (fast_enqueue.job_description; bench/README.md, "Memory per pending job").
        expected = "push_tracked_notification({'phoneNumber': '4153518743', ...)"
        assert (listed["id"], listed["description"]) == (job_id, expected)
        detail = json.loads(client.get(f"/0/data/job/{job_id}.json").data)
        assert detail["description"] == expected
