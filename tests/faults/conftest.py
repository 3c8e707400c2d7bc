"""Fixtures of the fault tests: a highly available Redis (Sentinel) to fail over."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from queuing.local_redis import SentinelRig
from tests.processes import started_rig


@pytest.fixture
def sentinel_rig() -> Iterator[SentinelRig]:
    """A master, an AOF replica and three sentinels of this test's own (local_redis);
    stopped and removed when the test ends."""
    with started_rig() as rig:
        yield rig
