"""Untrusted data: job payloads are JSON only (a planted pickle runs nothing), and
REDIS_URL carries a password and TLS (rediss://) to every script and server, while the
password never shows in their output."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.registry import FailedJobRegistry

from queuing import jobs
from queuing.connection import rq_client
from queuing.constants import PUSH_NOTIFICATION_QUEUE
from queuing.local_redis import RedisServer, RedisServerNotFound, TlsFiles
from tests.processes import Script, run_script, skip_unless_ci
from tests.scripts.test_jobs import start_processor, wait_until
from tests.servers import Server

PASSWORD = "s3cret-Pa55word"
SEND_6 = ("Sending notification to 4153518780, "
          "with message: This is the code to verify your account")


# --- A pickled payload planted in a queue -------------------------------------------------

class Exploit:
    """Unpickling this runs a command: what an attacker who can write to Redis plants."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


@pytest.mark.job_workers
def test_a_planted_pickle_runs_nothing_and_the_processor_goes_on(redis_url, tmp_path):
    connection = rq_client(redis_url)
    marker = tmp_path / "pwned"
    # RQ's default serializer is pickle: this is the job an attacker (or a misconfigured
    # producer) puts in our queue.
    planted = Queue(PUSH_NOTIFICATION_QUEUE, connection=connection).enqueue(
        "queuing.notifications.push_notification", Exploit(marker))
    raw = zlib.decompress(connection.hget(planted.key, "data"))
    assert b"subprocess" in raw  # the payload really is an exploit for pickle.loads
    good = jobs.json_queue(PUSH_NOTIFICATION_QUEUE, connection).enqueue(
        "queuing.notifications.push_notification",
        {"phoneNumber": "4153518780", "message": "This is the code to verify your account"})
    processor = start_processor("6_job_processor", redis_url, connection, workers=1)
    try:
        failed = FailedJobRegistry(PUSH_NOTIFICATION_QUEUE, connection=connection)
        wait_until(lambda: planted.id in failed.get_job_ids(), "the planted job failed")
        assert not marker.exists()
        processor.wait_for(SEND_6)  # and the job after it ran
        wait_until(lambda: good.get_status(refresh=True) == "finished", "the good job recorded")
    finally:
        processor.kill()
        connection.close()
    assert processor.lines == [SEND_6]  # nothing else, no traceback
    # Control: the same bytes given to pickle do run the command.
    pickle.loads(raw)
    assert marker.exists()


# --- Password and TLS through REDIS_URL ---------------------------------------------------

def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> TlsFiles:
    """A CA and a certificate for 127.0.0.1 it signed, made for this test run."""
    if shutil.which("openssl") is None:
        skip_unless_ci("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=test CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "redis.key", "-out", "redis.csr", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "redis.crt",
            cwd=folder)
    return TlsFiles(str(folder / "redis.crt"), str(folder / "redis.key"),
                    str(folder / "ca.crt"))


def secured_server(tls: TlsFiles | None) -> RedisServer:
    try:
        return RedisServer(password=PASSWORD, tls=tls).start()
    except RedisServerNotFound as error:
        skip_unless_ci(str(error))


@pytest.mark.parametrize("use_tls", [False, True], ids=["password", "password+tls"])
@pytest.mark.job_workers
def test_scripts_and_servers_work_through_a_secured_redis_url(use_tls, tls_files):
    server = secured_server(tls_files if use_tls else None)
    url = server.url
    assert url.startswith("rediss://" if use_tls else "redis://")
    running: list[Script] = []
    try:
        with pytest.raises(redis.AuthenticationError):  # it does want the password
            redis.Redis.from_url(url.replace(f":{PASSWORD}@", "")).ping()

        result = run_script("0_redis_client", url)
        assert (result.returncode, result.stdout) == (0, "Redis client connected to the server\n")

        connection = rq_client(url)
        processor = start_processor("6_job_processor", url, connection, workers=1,
                                    RQ_VERBOSE="1")
        running.append(processor)
        creator = run_script("6_job_creator", url)
        assert creator.stdout.endswith("Notification job completed\n"), creator
        processor.wait_for(SEND_6)

        for name, path in (("9_stock", "/list_products/1"), ("100_seat", "/available_seats")):
            web = Server.script(name, url)
            running.append(web)
            status, content_type, body = web.get(path)
            assert (status, content_type) == (200, "application/json"), body
        assert json.loads(body) == {"numberOfAvailableSeats": "50"}

        assert processor.interrupt() == 0
        for script in running:
            script.kill()
        for script in running:  # RQ's own logs included (RQ_VERBOSE=1)
            assert PASSWORD not in "\n".join(script.lines) + script.stderr
        connection.close()
    finally:
        for script in running:
            script.kill()
        server.close()


@pytest.mark.job_workers
def test_a_wrong_password_is_reported_without_any_password():
    server = secured_server(None)
    wrong = "wrong-Pa55word"
    url = server.url.replace(PASSWORD, wrong)
    try:
        client = Script("0_redis_client", url)
        try:
            line = client.read_line()
            assert line.startswith("Redis client not connected to the server: ")
            assert client.interrupt() == 130
        finally:
            client.kill()
        processor = Script("6_job_processor", url)  # waits for a server it can use
        try:
            line = processor.read_line()
            assert line.startswith("Redis client not connected to the server: ")
            assert processor.interrupt() == 0  # a processor stops cleanly, even while it waits
        finally:
            processor.kill()
        web = Server.script("9_stock", url)
        try:
            status, _, body = web.get("/list_products/1")
            web.kill()
        finally:
            web.kill()
        assert status == 503
        assert json.loads(body) == {"status": "Service Unavailable",
                                    "reason": "Redis is not reachable"}
        bad_url = run_script("0_redis_client", f"redis://:{wrong}@127.0.0.1:notaport")
        assert bad_url.returncode == 2
        for output in (client.lines, [client.stderr], processor.lines, [processor.stderr],
                       web.lines, [web.stderr], [bad_url.stdout, bad_url.stderr]):
            text = "\n".join(output)
            assert wrong not in text and PASSWORD not in text, text
    finally:
        server.close()


def test_a_managed_redis_whose_certificate_no_ca_we_trust_signed(tls_files):
    """docs/deploying.md: a managed Redis (Heroku's) gives ``rediss://:pw@host:port`` and a
    certificate signed by no CA this machine trusts. As given, the client refuses it; with
    ``?ssl_cert_reqs=none`` appended the traffic is encrypted but the server unverified."""
    server = secured_server(tls_files)
    try:
        as_given = f"rediss://:{PASSWORD}@127.0.0.1:{server.port}"
        client = rq_client(as_given)
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            client.ping()
        client.close()
        result = run_script("0_redis_client", f"{as_given}?ssl_cert_reqs=none")
        assert (result.returncode, result.stdout) == (0, "Redis client connected to the server\n")
    finally:
        server.close()
