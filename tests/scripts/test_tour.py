"""The main job, as `./run demo` runs it: the tour, on a throwaway server loaded from dump.rdb."""

import subprocess
import sys

from queuing.local_redis import RedisServerNotFound, find_redis_server
from tests.processes import ROOT, script_env, skip_unless_ci


def test_tour_runs_every_task_against_a_throwaway_server():
    try:
        find_redis_server()
    except RedisServerNotFound as error:
        skip_unless_ci(str(error))
    result = subprocess.run(
        [sys.executable, "-m", "queuing.local_redis", "--load", "dump.rdb",
         sys.executable, "tour.py"],
        cwd=ROOT, env=script_env(None), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert '"School"' in lines  # task 0's key, from dump.rdb
    assert lines.count("Reply: OK") == 2  # tasks 2 and 3
    assert ("{'Portland': '50', 'Seattle': '80', 'New York': '20', "
            "'Bogota': '20', 'Cali': '40', 'Paris': '2'}") in lines
    assert "terminal 1 | KILL_SERVER" in lines
    assert "terminal 2 | About to send Holberton Student #3 starts course" in lines
    assert "terminal 1 | Holberton Student #3 starts course" not in lines
    # Tasks 6-10: every job created is heard to its end.
    created = [line for line in lines if line.startswith("terminal 1 | Notification job created")]
    ended = [line for line in lines
             if line.startswith("terminal 1 | Notification job") and
             (line.endswith("completed") or " failed" in line)]
    assert len(created) == len(ended) == 1 + 11 + 1
    assert lines.count("terminal 1 | Notification job completed") == 1
    assert sum("Sending notification to" in line for line in lines) == 1 + 9
    # Tasks 12-13: the course's bodies, and the seat job's line in the server's terminal.
    assert '{"status":"Reservation confirmed","itemId":1}' in lines
    assert '{"numberOfAvailableSeats":"49"}' in lines
    assert any(line.startswith("server | Seat reservation job") and line.endswith("completed")
               for line in lines)
    assert "Traceback" not in result.stderr
