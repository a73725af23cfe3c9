"""What one run did, or would do (DESIGN §3 step 12): per project, entries posted and their hours, skipped by
reason, failed, and whether the entries await Timesheets approval or already count toward the budget."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from worker.enums import PROBLEM_SKIPS


@dataclass
class RunReport:
    project_id: int
    project_name: str
    window_start: date
    window_end: date
    dry_run: bool
    awaiting_approval: bool = False
    posted: int = 0
    hours: Decimal = Decimal("0.00")
    unchanged: int = 0
    updated: int = 0
    deleted: int = 0
    needs_review: int = 0
    failed: int = 0
    unknown: int = 0
    later: int = 0
    adopted: int = 0  # entries found in Procore by their identity before creating them: nothing sent
    lookback_days: int = 0  # days before the window that the run re-checked for edits and late clock-outs
    posted_before_window: int = 0  # of `posted`, entries dated in the look-back, before the window's first day
    hours_before_window: Decimal = Decimal("0.00")
    retired: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    malformed_events: list[str] = field(default_factory=list)
    procore_writes: int = 0
    route: str = "bulk"  # how entries were created: "bulk", or "single" where the bulk route was refused
    failures: list[str] = field(default_factory=list)  # each refusal of this run, by source key, in Procore's words
    # What is still wrong in the window after this run (any run's doing): groups by status and reason, with examples.
    problems: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)  # a manual sync's entries, each with its outcome
    preview: list[dict[str, Any]] = field(default_factory=list)
    # What a person sees on top of a preview: the rounding rule in words and the choices of the manual flow.
    rounding: str = ""
    labor_cost_codes: list[tuple[int, str]] = field(default_factory=list)  # (id, `01-100 General Conditions Labor`)
    labor_cost_types: list[tuple[int, str]] = field(default_factory=list)  # (id, name)

    @property
    def budget_note(self) -> str:
        if self.awaiting_approval:
            return "entries wait on the project's Timesheets for review and approval before they count"
        return "the Timesheets tool is off on this project: entries count toward the Labor budget at once"

    @property
    def problem_skips(self) -> dict[str, int]:
        """Skipped rows a person must fix (a rule, an Employee ID), by reason."""
        return {reason: n for reason, n in self.skipped.items() if reason in PROBLEM_SKIPS}

    @property
    def has_problems(self) -> bool:
        return bool(self.problems or self.failed or self.unknown or self.needs_review or self.malformed_events
                    or self.skipped.get("unmapped"))

    def problem_lines(self) -> list[str]:
        """What is still wrong, a line each, for a person: `still failed: 3 (procore_rejected), e.g. ...`."""
        lines = []
        for group in self.problems:
            label = group["status"].replace("_", " ")
            reason = f" ({group['reason']})" if group["reason"] else ""
            first = group["examples"][0] if group["examples"] else {}
            example = (f"; e.g. {first.get('technician')} on {first.get('date')}"
                       + (f": {first['detail']}" if first.get("detail") else "")) if first else ""
            lines.append(f"still {label}: {group['count']}{reason}{example}")
        lines += [f"malformed clock event: {problem}" for problem in self.malformed_events]
        return lines

    def counts(self) -> dict[str, Any]:
        return {
            "posted": self.posted,
            "hours": str(self.hours),
            "unchanged": self.unchanged,
            "updated": self.updated,
            "deleted": self.deleted,
            "needs_review": self.needs_review,
            "failed": self.failed,
            "unknown": self.unknown,
            "later": self.later,
            "adopted": self.adopted,
            "lookback_days": self.lookback_days,
            "posted_before_window": self.posted_before_window,
            "hours_before_window": str(self.hours_before_window),
            "retired": self.retired,
            "skipped": dict(sorted(self.skipped.items())),
            "malformed_events": len(self.malformed_events),
            "procore_writes": self.procore_writes,
            "route": self.route,
            "awaiting_approval": self.awaiting_approval,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "project_name": self.project_name,
            "window": [self.window_start.isoformat(), self.window_end.isoformat()],
            "dry_run": self.dry_run,
            **self.counts(),
            "budget": self.budget_note,
            "malformed": self.malformed_events,
            "problems": self.problems,
            "failures": self.failures,
            **({"entries": self.entries} if self.entries else {}),
            **({"preview": self.preview} if self.preview else {}),
        }
