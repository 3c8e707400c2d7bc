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
