"""Every Redis key the project writes and every default, in one place (as arq does)."""

DEFAULT_REDIS_URL = "redis://localhost:6379"

# Job ids: one counter for every queue, so ids grow across runs and processes, as Kue's do.
JOB_ID_KEY = "queuing:job_id"

# Queues of the course.
PUSH_NOTIFICATION_QUEUE = "push_notification_code"
PUSH_NOTIFICATION_QUEUE_2 = "push_notification_code_2"
PUSH_NOTIFICATION_QUEUE_3 = "push_notification_code_3"
RESERVE_SEAT_QUEUE = "reserve_seat"

# Servers (tasks 12 and 13).
DEFAULT_PORT = 1245

# Task 12: the remaining stock of item N (missing = nothing reserved yet).
STOCK_KEY = "item.{item_id}"

# Task 13: seats left, whether reservations are open ("1" or "0"), and the live seat servers.
AVAILABLE_SEATS_KEY = "available_seats"
RESERVATION_ENABLED_KEY = "reservation_enabled"
SEAT_SERVERS_KEY = "seat_servers"
# The number of the sale being sold, one more for each new sale: a reservation job made for
# an older sale takes no seat of a newer one.
SEAT_SALE_KEY = "seat_sale"
# The ids of the jobs that took a seat in the current sale: a job run twice takes one seat.
SEAT_JOBS_KEY = "seat_jobs"
INITIAL_SEATS = 50

# A worker's lease (recovery.py): present while the worker lives, renewed every few seconds.
WORKER_LEASE_KEY = "queuing:lease:{name}"
# Held by the one worker that is putting back the jobs of dead workers of a queue.
RECOVERY_LOCK_KEY = "queuing:recovery:{queue}"

# A batch of jobs written by one enqueue (the key names its first job's id): a retried
# enqueue writes nothing when it exists. It outlives any retry.
BATCH_MARKER_KEY = "queuing:batch:{first_job_id}"
BATCH_MARKER_SECONDS = 60 * 60

# Job events (tasks 6-11): each creator gets a reply stream JOB_EVENTS_PREFIX + a random id.
JOB_EVENTS_PREFIX = "queuing:job_events:"
# An abandoned reply stream (its creator was stopped) goes away this long after its last event.
JOB_EVENTS_TTL_SECONDS = 24 * 60 * 60

# SMS senders, uptime checks, reminders (scripts 101-105).
SMS_QUEUE = "sms"  # JSON jobs senders.send_sms(phone_number, message)
# An SMS job's meta: the user who asked for it (web app), how many retries it was given,
# and its last failure's one line (written by the worker, shown by GET /messages/<id>).
OWNER_META = "owner"
RETRIES_META = "retries"
FAILURE_META = "failure"
REMINDERS_TICK_QUEUE = "reminders_tick"  # RQ cron's tick (RQ cron jobs carry no data)
UPTIME_CHECK_ID_KEY = "uptime:check_id"
UPTIME_CHECKS_KEY = "uptime:checks"  # set of check ids
UPTIME_CHECK_KEY = "uptime:check:{check_id}"  # hash: the check's fields
UPTIME_STATE_KEY = "uptime:check:{check_id}:state"  # "up" or "down"
UPTIME_LOG_KEY = "uptime:check:{check_id}:log"  # newest first, JSON lines
UPTIME_LOG_LENGTH = 20
DEFAULT_UPTIME_INTERVAL_SECONDS = 60
REMINDER_ID_KEY = "reminders:reminder_id"
REMINDERS_KEY = "reminders:all"  # set of reminder ids
REMINDER_KEY = "reminders:reminder:{reminder_id}"  # hash: message, phones, times
REMINDER_OWNER_KEY = "reminders:owner:{owner}"  # set: the ids of one user's reminders
REMINDER_SENT_KEY = "reminders:sent:{reminder_id}:{slot}"  # SET NX: one send per time slot
REMINDER_SENT_TTL_SECONDS = 2 * 24 * 60 * 60
DEFAULT_REMINDER_TIMES = ("09:00", "12:00", "18:00", "22:00")
# A slot missed by up to this long (scheduler down, worker busy) is still sent, once.
DEFAULT_REMINDER_GRACE_SECONDS = 10 * 60

# The web app's users and their sign-in tokens (webapp.py: the uptime service's API).
UPTIME_USER_KEY = "uptime:user:{phone}"  # hash: names, password hash, tosAgreement
UPTIME_USER_CHECKS_KEY = "uptime:user:{phone}:checks"  # set of the user's check ids
UPTIME_USER_TOKENS_KEY = "uptime:user:{phone}:tokens"  # set of the user's token digests
UPTIME_TOKEN_KEY = "uptime:token:{digest}"  # hash: phone, expires; the SHA-256 of a token
DEFAULT_TOKEN_SECONDS = 60 * 60
DEFAULT_MAX_CHECKS = 5
DEFAULT_PHONE_REGION = "US"
