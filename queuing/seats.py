"""Task 13: seats in Redis, the ``reserve_seat`` job, and the Flask app that queues it.

Every piece of state several server processes must agree on is in Redis:
``available_seats``, ``reservation_enabled`` ("1" or "0"), the queue and the live
servers (see seat_sale.py). A job takes its seat with one Lua script, which also
closes reservations at 0, so exactly 50 jobs ever complete, whatever the load.
"""

from __future__ import annotations

import redis
from flask import Flask
from rq import Callback, get_current_job
from rq.job import Job

from queuing import connection, console, jobs, replication, stopping, web
from queuing.constants import (
    AVAILABLE_SEATS_KEY,
    RESERVATION_ENABLED_KEY,
    RESERVE_SEAT_QUEUE,
    SEAT_JOBS_KEY,
    SEAT_SALE_KEY,
)
from queuing.seat_sale import Sale
from queuing.seat_worker import WorkerThread

NOT_ENOUGH_SEATS = "Not enough seats available"
SALE_ENDED = "its sale has ended: a new sale of 50 seats started since it was queued"

# KEYS: available_seats, reservation_enabled, seat_jobs, seat_sale. ARGV: the job's id,
# the sale it was made for ("" for any).
# Returns the seats left, -1 if none was, -2 if the job's sale is over. A job that already
# took its seat (it runs again after its worker died: recovery.py) takes no other and
# gets the seats left.
TAKE_SEAT = """
if ARGV[2] ~= '' and ARGV[2] ~= (redis.call('GET', KEYS[4]) or '') then
  return -2
end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then
  return tonumber(redis.call('GET', KEYS[1]) or '0')
end
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left < 1 then
  redis.call('SET', KEYS[2], '0')
  return -1
end
redis.call('SET', KEYS[1], left - 1)
redis.call('SADD', KEYS[3], ARGV[1])
if left == 1 then redis.call('SET', KEYS[2], '0') end
return left - 1
"""


class NotEnoughSeats(Exception):
    def __init__(self) -> None:
        super().__init__(NOT_ENOUGH_SEATS)


class SaleEnded(Exception):
    """A reservation made in one sale, run in a later one (a server restarted after the
    old sale's servers all died): it takes no seat of the new sale."""

    def __init__(self) -> None:
        super().__init__(SALE_ENDED)


def reserve_seat(client: redis.Redis, number: int) -> None:
    """Set the number of available seats (the course's ``reserveSeat``)."""
    client.set(AVAILABLE_SEATS_KEY, number)


def get_current_available_seats(client: redis.Redis | web.KeptGet) -> str:
    """The seats left, as the string Redis holds ("50"); "0" if the key is gone."""
    return client.get(AVAILABLE_SEATS_KEY) or "0"


def open_sale(client: redis.Redis) -> str | None:
    """The number of the sale taking reservations ("" before sales were numbered), or
    None when reservations are blocked: one round trip."""
    enabled, sale = client.mget(RESERVATION_ENABLED_KEY, SEAT_SALE_KEY)
    return (sale or "") if enabled in ("1", b"1") else None


def take_seat(sale: str = "") -> int:
    """The ``reserve_seat`` job: take one seat of ``sale`` (the sale it was queued in), or
    fail with "Not enough seats available", or with SaleEnded when a new sale started since.

    Safe to run twice: a job takes at most one seat, however often it runs. In the
    replicated mode the outcome counts only once the replicas have it (confirm_outcome).
    """
    job = get_current_job()
    left = take(job.connection, job.id, sale)
    confirm_outcome(job.connection, job.id, left)
    if left == -2:
        raise SaleEnded
    if left < 0:
        raise NotEnoughSeats
    return left


def take(client: redis.Redis, job_id: str, sale: str) -> int:
    """TAKE_SEAT for ``job_id``: the seats left, -1 if none was, -2 if its sale is over."""
    return int(client.eval(TAKE_SEAT, 4, AVAILABLE_SEATS_KEY, RESERVATION_ENABLED_KEY,
                           SEAT_JOBS_KEY, SEAT_SALE_KEY, job_id, sale))


def confirm_outcome(client: redis.Redis, job_id: str, left: int) -> None:
    """In the replicated mode, return once the replicas have the take (the job's record in
    SEAT_JOBS_KEY) or, for a refusal, the state it was read from; else raise
    replication.NotReplicated, which puts the job back in its queue (seat_worker.py): a
    failover could still undo the take and sell the seat again, or undo the takes that
    left none and make the refusal wrong. The next run takes a seat only if this one's
    take is gone. With ``REDIS_MIN_REPLICAS=0`` nothing is sent."""
    taken = [(SEAT_JOBS_KEY, job_id)] if left >= 0 else []
    replication.confirm(client, in_sets=taken)


def seat_taken(job, client, result) -> None:
    """The job's success callback. RQ runs a job's callbacks where the job ran: the
    server whose worker took it."""
    console.log(f"Seat reservation job {job.id} completed")


def seat_refused(job, client, exc_type, exc_value, traceback) -> None:
    """The job's failure callback: no seat left, the sale over, or any other failure."""
    console.log(f"Seat reservation job {job.id} failed: {exc_value}")


def queue_reservation(rq_client: redis.Redis, sale: str = "") -> str:
    """Queue one ``reserve_seat`` job of ``sale`` with a Kue-like id; the id."""
    job = jobs.json_queue(RESERVE_SEAT_QUEUE, rq_client).enqueue(
        take_seat, sale, job_id=jobs.next_job_id(rq_client),
        on_success=Callback(seat_taken), on_failure=Callback(seat_refused))
    return job.id


def create_app(client: redis.Redis | None = None, rq_connection: redis.Redis | None = None,
               *, processor: WorkerThread | None = None, join_sale: bool = True) -> Flask:
    """The seat server. At creation it starts a sale of 50 seats, or joins the live one
    (seat_sale.py); tests pass fakeredis clients and may skip the lease."""
    app = web.new_app(__name__)
    if client is None:
        client = connection.server_client()
        connection.check_server_accepts(client)
    redis_client = client
    rq_connection = (rq_connection if rq_connection is not None
                     else connection.server_client(decode_responses=False))  # RQ: bytes
    replication.check_settings(rq_connection)
    processor = processor or WorkerThread(connection.seat_worker_client())
    if join_sale:
        sale = Sale(redis_client)
        sale.join_now_or_later()
        app.extensions["seat_sale"] = sale
        # Under granian: give the lease back and deregister the worker on the stop signal.
        stopping.on_granian_stop(sale.leave, processor.stop)

    seat_reads = web.KeptGet(redis_client)  # the hot GET's own connections

    def available_seats_body() -> str:
        return web.dumps({"numberOfAvailableSeats": get_current_available_seats(seat_reads)})

    @app.get("/available_seats")
    def available_seats():
        return web.json_text_response(available_seats_body())

    @app.get("/reserve_seat")
    def reserve():
        """Queue a reservation. In the replicated mode it is "in process" once the required
        replicas have the job; else 503. The job is then on the master only: it may still
        run and take a seat (the 50 stay exact), or vanish in a failover."""
        web.refuse_head()
        try:
            sale = open_sale(redis_client)
            if sale is None:
                return web.json_response({"status": "Reservation are blocked"})
            job_id = queue_reservation(rq_connection, sale)
            replication.confirm_or_unavailable(rq_connection, "Reservation",
                                               written=[Job.key_for(job_id)])
        except redis.RedisError:
            return web.json_response({"status": "Reservation failed"}, 503)
        return web.json_response({"status": "Reservation in process"})

    @app.get("/process")
    def process():
        web.refuse_head()
        processor.start()
        return web.json_response({"status": "Queue processing"})

    # The same body for the seat count, without Flask's per-request cost (web.HotReads).
    app.wsgi_app = web.HotReads(app.wsgi_app,
                                {web.path_of(app, "available_seats"): available_seats_body})
    return app
