"""Every Celery setting in one place, fed by typed settings from the environment (STYLE: one place for config)."""

from kombu import Queue

from worker.settings import get_settings

_settings = get_settings()

broker_url = _settings.celery_broker_url
broker_connection_retry_on_startup = True

# UTC everywhere; schedules are computed in each project's zone by the dispatcher, not by beat.
timezone = "UTC"
enable_utc = True

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
# The ledger and sync_runs are the record of what happened; Celery keeps no results.
task_ignore_result = True
result_backend = None

# At-least-once delivery: a task is acknowledged only when it finished, and a worker killed mid-task gives the
# message back. The pipeline is idempotent, so a second delivery runs nothing twice.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

task_soft_time_limit = _settings.sync_soft_time_limit_s
task_time_limit = _settings.sync_hard_time_limit_s
# Redis redelivers an unacknowledged message after the visibility timeout; it must exceed the hard time limit or a
# long sync would be handed to a second worker while the first still runs. Celery reads it in three places.
_visibility_timeout = _settings.sync_hard_time_limit_s + 600
broker_transport_options = {"visibility_timeout": _visibility_timeout}
result_backend_transport_options = {"visibility_timeout": _visibility_timeout}
visibility_timeout = _visibility_timeout

# Dispatching is tiny and must never wait behind long syncs; sync workers scale out on more machines.
task_default_queue = "sync"
task_queues = (Queue("dispatch"), Queue("sync"))
task_routes = {"tasks.schedule.*": {"queue": "dispatch"}, "tasks.sync.*": {"queue": "sync"},
               "tasks.projects.*": {"queue": "sync"}, "tasks.webhooks.*": {"queue": "sync"},
               "tasks.digest.*": {"queue": "sync"}}

beat_schedule = {
    "dispatch-due": {
        "task": "tasks.schedule.dispatch_due",
        "schedule": _settings.dispatch_interval_s,
        # A dispatch that waited a whole interval is superseded by the next one.
        "options": {"queue": "dispatch", "expires": max(1.0, _settings.dispatch_interval_s - 5)},
    }
}

# Flower shows task state from events; results stay off.
worker_send_task_events = True
task_send_sent_event = True
worker_hijack_root_logger = False
worker_redirect_stdouts = False
