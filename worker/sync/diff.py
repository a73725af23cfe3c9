"""What to do with each ledger row, given what the punches say now (DESIGN §3 step 9). Pure: no Procore calls,
no database; the pipeline carries the actions out.

Every source key, desired or in the ledger, gets exactly one action.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.enums import UNRESOLVED_STATUSES, LedgerStatus, SkipReason

# Nothing of these rows is in Procore (a person deleted it there, or it never got there).
_NOT_IN_PROCORE = frozenset({LedgerStatus.skipped, LedgerStatus.deleted})

SOURCE_GONE = "source no longer present"
RESOLVED = "resolved"
MANUAL = "manual entry: left alone by scheduled runs"
ALREADY_REMOVED = "already removed"
DELETED_BY_PERSON = "deleted in Procore by a person: not posted again unless someone asks"


class ActionKind(enum.StrEnum):
    create = "create"  # post a new entry
    unchanged = "unchanged"  # nothing to send; `reason` may say why (RESOLVED: the pipeline marks it posted)
    update = "update"  # PATCH the posted entry
    delete = "delete"  # DELETE the posted entry
    needs_review = "needs_review"  # the source changed under an approved entry: a person decides
    skip = "skip"  # record (or keep) a skipped row
    retire = "retire"  # a row that never reached Procore lost its source: close it, no Procore call
    reconcile = "reconcile"  # outcome of an earlier POST unknown: look it up in Procore, then diff again


@dataclass(frozen=True)
class Desired:
    """What this run computed for one source key: an entry to post (`content_hash`) or a skipped row
    (`skip_reason`), never both. `source_derived` says the skip comes from the punches themselves (open,
    invalid, zero after rounding, excluded) rather than from configuration (employee id, rules)."""

    source_key: str
    content_hash: str | None
    skip_reason: SkipReason | None
    source_derived: bool

    def __post_init__(self) -> None:
        if (self.content_hash is None) == (self.skip_reason is None):
            raise ValueError(
                f"desired row {self.source_key!r} needs exactly one of content_hash and skip_reason"
            )


@dataclass(frozen=True)
class LedgerView:
    """The ledger row of one source key as the diff needs it."""

    source_key: str
    status: LedgerStatus
    content_hash: str | None
    procore_entry_id: int | None
    approved: bool
    manual: bool
    reason: str | None

    def __post_init__(self) -> None:
        try:
            status = LedgerStatus(self.status)
        except ValueError:
            raise ValueError(f"ledger row {self.source_key!r} has an unknown status {self.status!r}") from None
        object.__setattr__(self, "status", status)


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    source_key: str
    reason: str | None = None


def diff(desired: Mapping[str, Desired], ledger: Mapping[str, LedgerView]) -> list[Action]:
    """One action per source key of `desired` ∪ `ledger`, in key order."""
    return [_decide(desired.get(key), ledger.get(key), key) for key in sorted(desired.keys() | ledger.keys())]


def content_hash(payload: Mapping[str, Any]) -> str:
    """sha256 of the payload as canonical JSON (sorted keys, no spaces): equal payloads, equal hashes."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _decide(want: Desired | None, row: LedgerView | None, key: str) -> Action:
    if row is not None and row.manual:
        return Action(ActionKind.unchanged, key, MANUAL)
    if row is not None and row.status in UNRESOLVED_STATUSES:
        return Action(ActionKind.reconcile, key, f"earlier post is {row.status}: look it up in Procore first")
    if want is None:
        assert row is not None  # the key came from one of the two mappings
        return _source_gone(row)
    if want.content_hash is not None:
        return _post(want, want.content_hash, row)
    assert want.skip_reason is not None  # Desired holds exactly one of the two
    return _skip(want, want.skip_reason, row)


def _post(want: Desired, new_hash: str, row: LedgerView | None) -> Action:
    key = want.source_key
    if row is not None and row.status == LedgerStatus.deleted_in_procore:
        return Action(ActionKind.unchanged, key, DELETED_BY_PERSON)
    if row is None or row.status in _NOT_IN_PROCORE:
        return Action(ActionKind.create, key, None if row is None else f"was {row.status}")
    if row.status == LedgerStatus.failed:
        if row.content_hash == new_hash:
            return Action(ActionKind.unchanged, key, row.reason)  # same entry, same refusal: don't resend it
        return Action(ActionKind.create, key, "changed since Procore refused it")
    if row.status == LedgerStatus.needs_review:
        if row.content_hash == new_hash:
            return Action(ActionKind.unchanged, key, RESOLVED)
        return Action(ActionKind.unchanged, key, row.reason)
    # posted
    if row.content_hash == new_hash:
        return Action(ActionKind.unchanged, key)
    if row.approved:
        return Action(ActionKind.needs_review, key, "clock events changed after Procore approved the entry")
    return Action(ActionKind.update, key, "clock events changed")


def _skip(want: Desired, reason: SkipReason, row: LedgerView | None) -> Action:
    key = want.source_key
    if row is not None and row.status in (LedgerStatus.needs_review, LedgerStatus.deleted_in_procore):
        return Action(ActionKind.unchanged, key, row.reason)  # a person decides what happens to it
    if row is None or row.status != LedgerStatus.posted:
        return Action(ActionKind.skip, key, reason.value)
    # posted
    if not want.source_derived:
        # A configuration problem (an employee id, a rule) says nothing about the work: the entry stays.
        return Action(ActionKind.unchanged, key, f"kept in Procore: now {reason.value}")
    if row.approved:
        return Action(ActionKind.needs_review, key, f"source now {reason.value} after Procore approved the entry")
    return Action(ActionKind.delete, key, f"source now {reason.value}")


def _source_gone(row: LedgerView) -> Action:
    key = row.source_key
    if row.status == LedgerStatus.posted:
        if row.approved:
            return Action(ActionKind.needs_review, key, SOURCE_GONE)
        return Action(ActionKind.delete, key, SOURCE_GONE)
    if row.status in (LedgerStatus.skipped, LedgerStatus.failed):
        return Action(ActionKind.retire, key, SOURCE_GONE)
    if row.status == LedgerStatus.needs_review:
        return Action(ActionKind.unchanged, key, row.reason)
    return Action(ActionKind.unchanged, key, ALREADY_REMOVED)  # deleted (by us or a person): nothing to do
