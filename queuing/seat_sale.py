"""Which seat-server process starts the sale of 50 seats, and which ones join it.

Every seat server keeps a lease in the sorted set ``seat_servers`` (member: a random id,
score: when the lease ends, in Redis's clock) and renews it every few seconds. At start,
one Lua script drops expired leases and, only if no live server is left, sets
``available_seats`` to 50 and opens reservations; then it adds this server's lease.
So ``python 100_seat.py`` on its own starts a new sale, while a second process, or
granian's worker processes, join the one being sold instead of resetting it.

A process that starts while Redis cannot be reached (a granian worker started or
respawned during an outage) does not die: it joins once Redis is back, and then joins
any sale that exists, live leases or not, rather than start a new one. Its fellow
workers' leases may have lapsed during the outage, and a new sale would sell their
seats again.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.util
import os
import threading
import uuid

import redis

from queuing.constants import (
    AVAILABLE_SEATS_KEY,
    INITIAL_SEATS,
    RESERVATION_ENABLED_KEY,
    SEAT_JOBS_KEY,
    SEAT_SALE_KEY,
    SEAT_SERVERS_KEY,
)

LEASE_SECONDS = 15
RENEW_SECONDS = 5
JOIN_RETRY_SECONDS = 0.5  # a process that started during an outage tries this often

# KEYS: seat_servers, available_seats, reservation_enabled, seat_jobs, seat_sale.
# ARGV: lease ms, id, seats, "1" to join any sale that exists (live leases or not).
# Returns 1 when this call started a new sale, 0 when it joined one.
START_OR_JOIN = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local fresh = redis.call('ZCARD', KEYS[1]) == 0
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[5]) == 1 then
  fresh = false
end
if fresh then
  redis.call('SET', KEYS[2], ARGV[3])
  redis.call('SET', KEYS[3], '1')
  redis.call('DEL', KEYS[4])
  redis.call('INCR', KEYS[5])
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
if fresh then return 1 end
return 0
"""

RENEW = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
"""


class Sale:
    """This process's lease on the running sale; :meth:`join` once, :meth:`leave` at exit."""

    def __init__(self, client: redis.Redis, seats: int = INITIAL_SEATS) -> None:
        self.client = client
        self.seats = seats
        self.server_id = uuid.uuid4().hex
        self._owner_pid = os.getpid()  # a child forked after join() must not leave
        self._stopped = threading.Event()

    def join(self, renew: bool = True) -> bool:
        """Start a new sale if no live server holds one, else join it; True if new.

        The lease's return is registered before the lease is taken: a stop that comes
        while it is taken still gives it back at exit."""
        if renew:
            self._leave_at_exit()
        started = self._start_or_join(any_sale=False)
        if renew:
            threading.Thread(target=self._renew, daemon=True, name="seat-lease").start()
        return started

    def join_now_or_later(self) -> None:
        """:meth:`join`; while Redis cannot be reached, a thread joins once it can (then
        any sale that exists: see the module's docstring), and the server answers 503
        meanwhile instead of failing to start."""
        self._leave_at_exit()
        try:
            self._start_or_join(any_sale=False)
        except (redis.ConnectionError, redis.TimeoutError):
            threading.Thread(target=self._join_later, daemon=True, name="seat-lease").start()
        else:
            threading.Thread(target=self._renew, daemon=True, name="seat-lease").start()

    def _leave_at_exit(self) -> None:
        atexit.register(self.leave)
        if multiprocessing.parent_process() is not None:
            # A worker process started by multiprocessing (granian's workers are) ends
            # with os._exit, which skips atexit; multiprocessing's own exit hooks run.
            multiprocessing.util.Finalize(None, self.leave, exitpriority=0)

    def _start_or_join(self, any_sale: bool) -> bool:
        return bool(self.client.eval(
            START_OR_JOIN, 5, SEAT_SERVERS_KEY, AVAILABLE_SEATS_KEY, RESERVATION_ENABLED_KEY,
            SEAT_JOBS_KEY, SEAT_SALE_KEY, LEASE_SECONDS * 1000, self.server_id, self.seats,
            "1" if any_sale else "0"))

    def _join_later(self) -> None:
        while not self._stopped.wait(JOIN_RETRY_SECONDS):
            try:
                self._start_or_join(any_sale=True)
                break
            except (redis.ConnectionError, redis.TimeoutError):
                continue
        self._renew()

    def _renew(self) -> None:
        while not self._stopped.wait(RENEW_SECONDS):
            # While Redis is away the lease is not renewed; it is once Redis is back.
            with contextlib.suppress(redis.RedisError):
                self.client.eval(RENEW, 1, SEAT_SERVERS_KEY, LEASE_SECONDS * 1000,
                                 self.server_id)

    def leave(self) -> None:
        """Give the lease back, so the next ``python 100_seat.py`` starts a new sale."""
        self._stopped.set()
        if os.getpid() != self._owner_pid:
            return
        with contextlib.suppress(redis.RedisError):  # else it expires by itself
            self.client.zrem(SEAT_SERVERS_KEY, self.server_id)
