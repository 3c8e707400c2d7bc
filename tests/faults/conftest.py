"""Fixtures of the fault tests: a highly available Redis (Sentinel) to fail over."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from queuing.local_redis import RedisServerNotFound, SentinelRig
from tests.processes import skip_unless_ci


@pytest.fixture
def sentinel_rig() -> Iterator[SentinelRig]:
    """A master, an AOF replica and three sentinels of this test's own (local_redis);
    stopped and removed when the test ends. Without a redis-server it skips, except in CI,
    where it fails."""
    try:
        rig = SentinelRig()
    except RedisServerNotFound as error:
        skip_unless_ci(str(error))
    with rig:
        yield rig
