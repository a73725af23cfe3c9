"""The named facts every layer shares, defined once: the models store them, the pure steps decide with them, the
front doors print them. A new value goes here (and, for a stored one, into a migration) and nowhere else."""

from __future__ import annotations

import enum


class LedgerStatus(enum.StrEnum):
    """Where one Procore timecard entry that stsync is responsible for stands (DESIGN §2)."""

    pending = "pending"  # claimed, about to be sent
    posted = "posted"
    unknown = "unknown"  # sent, outcome not known: looked up in Procore before anything is sent again
    failed = "failed"  # Procore refused it; the reason is kept
    skipped = "skipped"  # not posted, with a reason code (SkipReason)
    deleted = "deleted"  # its source vanished and the Procore entry was removed (or never existed)
    needs_review = "needs_review"  # changed after approval, or a person edited it in Procore
    deleted_in_procore = "deleted_in_procore"  # a person deleted it in Procore: not re-posted unless asked


# Sent, or about to be, with no known outcome.
UNRESOLVED_STATUSES = frozenset({LedgerStatus.pending, LedgerStatus.unknown})
# What a run that leaves such rows behind reports as a problem, by name, every time until it is fixed.
PROBLEM_STATUSES = frozenset({LedgerStatus.failed, LedgerStatus.unknown, LedgerStatus.needs_review})


class SkipReason(enum.StrEnum):
    """Why a ledger row is not posted (DESIGN §2)."""

    no_employee_id = "no_employee_id"
    invalid_employee_id = "invalid_employee_id"
    unmapped = "unmapped"
    open_interval = "open_interval"
    invalid_interval = "invalid_interval"
    zero_after_rounding = "zero_after_rounding"
    excluded_activity = "excluded_activity"


# Skips a person must fix (a rule or an Employee ID), as opposed to what the punches themselves say.
PROBLEM_SKIPS = frozenset({SkipReason.unmapped, SkipReason.no_employee_id, SkipReason.invalid_employee_id})


class TechnicianStatus(enum.StrEnum):
    ok = "ok"
    no_employee_id = "no_employee_id"
    invalid_employee_id = "invalid_employee_id"
    not_employee = "not_employee"


class EntryMode(enum.StrEnum):
    hours = "hours"
    start_stop = "start_stop"


class SplitMode(enum.StrEnum):
    midnight = "midnight"  # split at local midnight in the project's zone
    start_date = "start_date"  # the whole interval on its start date


class ScheduleKind(enum.StrEnum):
    nightly = "nightly"
    weekly = "weekly"
    payroll = "payroll"


class PayrollKind(enum.StrEnum):
    weekly = "weekly"
    biweekly = "biweekly"
    semimonthly = "semimonthly"  # 1st–15th and 16th–last day
    monthly = "monthly"


class RunStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    completed_with_problems = "completed_with_problems"  # ended, but left rows failed, unknown, unmapped or in review
    failed = "failed"
    deferred = "deferred"


FINISHED_RUN_STATUSES = frozenset({RunStatus.succeeded, RunStatus.completed_with_problems, RunStatus.failed})


class RunTrigger(enum.StrEnum):
    schedule = "schedule"
    cli = "cli"
    task = "task"
    manual = "manual"
    retry = "retry"
    webhook = "webhook"
    console = "console"


class EventType(enum.StrEnum):
    """ServiceTrade clock event types (ST-5)."""

    clock_in = "clockIn"
    clock_out = "clockOut"


class Activity(enum.StrEnum):
    """ServiceTrade clock event activities (ST-5)."""

    onsite = "onsite"
    enroute = "enroute"
    offsite = "offsite"
    onbreak = "onbreak"


EVENT_TYPES = frozenset(e.value for e in EventType)
ACTIVITIES = frozenset(a.value for a in Activity)
# Activities a rule may name: a break is never posted.
RULE_ACTIVITIES = (Activity.onsite, Activity.enroute, Activity.offsite)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
