"""The ledger diff (DESIGN §3 step 9): one action per source key."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.enums import LedgerStatus, SkipReason
from worker.sync.diff import (
    DELETED_BY_PERSON,
    Action,
    ActionKind,
    Desired,
    LedgerView,
    content_hash,
    diff,
)

K = "101:2026-06-10"
CONFIG = [SkipReason.no_employee_id, SkipReason.invalid_employee_id, SkipReason.unmapped]
SOURCE = [SkipReason.open_interval, SkipReason.invalid_interval, SkipReason.zero_after_rounding,
          SkipReason.excluded_activity]


def post(h: str = "h1") -> Desired:
    return Desired(K, h, None, False)


def skip(reason: SkipReason) -> Desired:
    return Desired(K, None, reason, reason in SOURCE)


def row(status: str, h: str | None = "h1", *, approved: bool = False, manual: bool = False,
        reason: str | None = None) -> LedgerView:
    return LedgerView(K, status, h, 9001 if status in ("posted", "needs_review") else None, approved, manual, reason)


def one(want: Desired | None, have: LedgerView | None) -> Action:
    actions = diff({K: want} if want else {}, {K: have} if have else {})
    assert len(actions) == 1 and actions[0].source_key == K
    return actions[0]


@pytest.mark.parametrize(
    ("want", "have", "kind", "reason"),
    [
        # desired: post
        (post(), None, ActionKind.create, None),
        (post(), row("skipped", None, reason="unmapped"), ActionKind.create, "was skipped"),
        (post(), row("deleted"), ActionKind.create, "was deleted"),
        (post(), row("deleted_in_procore", None), ActionKind.unchanged, DELETED_BY_PERSON),
        (post("h1"), row("failed", "h1", reason="cost code refused"), ActionKind.unchanged, "cost code refused"),
        (post("h2"), row("failed", "h1", reason="cost code refused"), ActionKind.create,
         "changed since Procore refused it"),
        (post("h1"), row("posted", "h1"), ActionKind.unchanged, None),
        (post("h1"), row("posted", "h1", approved=True), ActionKind.unchanged, None),
        (post("h2"), row("posted", "h1"), ActionKind.update, "clock events changed"),
        (post("h2"), row("posted", "h1", approved=True), ActionKind.needs_review,
         "clock events changed after Procore approved the entry"),
        (post("h2"), row("needs_review", "h1", reason="changed_after_approval"), ActionKind.unchanged,
         "changed_after_approval"),
        (post("h1"), row("needs_review", "h1", reason="changed_after_approval"), ActionKind.unchanged, "resolved"),
        # desired: skip
        (skip(SkipReason.unmapped), None, ActionKind.skip, "unmapped"),
        (skip(SkipReason.unmapped), row("skipped", None, reason="unmapped"), ActionKind.skip, "unmapped"),
        (skip(SkipReason.no_employee_id), row("skipped", None, reason="unmapped"), ActionKind.skip, "no_employee_id"),
        (skip(SkipReason.open_interval), row("failed"), ActionKind.skip, "open_interval"),
        (skip(SkipReason.open_interval), row("deleted"), ActionKind.skip, "open_interval"),
        (skip(SkipReason.invalid_interval), row("posted"), ActionKind.delete, "source now invalid_interval"),
        (skip(SkipReason.zero_after_rounding), row("posted", approved=True), ActionKind.needs_review,
         "source now zero_after_rounding after Procore approved the entry"),
        (skip(SkipReason.invalid_employee_id), row("posted"), ActionKind.unchanged,
         "kept in Procore: now invalid_employee_id"),
        (skip(SkipReason.unmapped), row("posted", approved=True), ActionKind.unchanged, "kept in Procore: now unmapped"),
        (skip(SkipReason.open_interval), row("needs_review", reason="approved"), ActionKind.unchanged, "approved"),
        # gone from the source
        (None, row("posted"), ActionKind.delete, "source no longer present"),
        (None, row("posted", approved=True), ActionKind.needs_review, "source no longer present"),
        (None, row("skipped", None, reason="unmapped"), ActionKind.retire, "source no longer present"),
        (None, row("failed"), ActionKind.retire, "source no longer present"),
        (None, row("deleted"), ActionKind.unchanged, "already removed"),
        (None, row("deleted_in_procore"), ActionKind.unchanged, "already removed"),
        (None, row("needs_review", reason="approved"), ActionKind.unchanged, "approved"),
    ],
)
def test_diff_branch(want: Desired | None, have: LedgerView | None, kind: ActionKind, reason: str | None) -> None:
    assert one(want, have) == Action(kind, K, reason)


@pytest.mark.parametrize("status", ["pending", "unknown"])
@pytest.mark.parametrize("want", [post("h1"), post("h2"), skip(SkipReason.open_interval), None])
def test_unresolved_posts_are_reconciled_first(status: str, want: Desired | None) -> None:
    assert one(want, row(status)).kind is ActionKind.reconcile


@pytest.mark.parametrize("status", ["pending", "unknown", "posted", "failed", "skipped", "deleted", "needs_review"])
@pytest.mark.parametrize("want", [post("h2"), skip(SkipReason.open_interval), None])
def test_manual_rows_are_never_touched(status: str, want: Desired | None) -> None:
    action = one(want, row(status, manual=True))
    assert action.kind is ActionKind.unchanged
    assert action.reason is not None and "manual" in action.reason


def test_actions_come_in_key_order() -> None:
    desired = {k: Desired(k, "h", None, False) for k in ("3:2026-06-10", "1:2026-06-10")}
    ledger = {"2:2026-06-10": LedgerView("2:2026-06-10", "posted", "h", 5, False, False, None)}
    assert [(a.kind, a.source_key) for a in diff(desired, ledger)] == [
        (ActionKind.create, "1:2026-06-10"),
        (ActionKind.delete, "2:2026-06-10"),
        (ActionKind.create, "3:2026-06-10"),
    ]


def test_desired_needs_exactly_one_of_hash_and_skip_reason() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Desired(K, None, None, False)
    with pytest.raises(ValueError, match="exactly one"):
        Desired(K, "h", SkipReason.unmapped, False)


def test_ledger_view_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="unknown status 'lost'"):
        LedgerView(K, "lost", None, None, False, False, None)


def test_content_hash_is_sha256_of_canonical_json() -> None:
    assert content_hash({"b": 1, "a": "x"}) == hashlib.sha256(b'{"a":"x","b":1}').hexdigest()
    assert content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1})
    assert content_hash({"hours": "7.25"}) != content_hash({"hours": "7.50"})
    assert content_hash({"n": {"y": 1, "x": [1, 2]}}) == content_hash({"n": {"x": [1, 2], "y": 1}})


# --------------------------------------------------------------------------- property

STATUSES = [s.value for s in LedgerStatus]
keys = st.sampled_from([f"{n}:2026-06-1{d}" for n in range(1, 6) for d in range(3)])
hashes = st.sampled_from(["h1", "h2"])
desired_rows = st.one_of(
    st.builds(lambda h: (h, None, False), hashes),
    st.builds(lambda r: (None, r, r in SOURCE), st.sampled_from(list(SkipReason))),
)
ledger_rows = st.tuples(st.sampled_from(STATUSES), st.one_of(st.none(), hashes), st.booleans(), st.booleans(),
                        st.one_of(st.none(), st.just("why")))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    desired=st.dictionaries(keys, desired_rows, max_size=10),
    ledger=st.dictionaries(keys, ledger_rows, max_size=10),
)
def test_every_key_gets_exactly_one_action(
    desired: dict[str, tuple[str | None, SkipReason | None, bool]],
    ledger: dict[str, tuple[str, str | None, bool, bool, str | None]],
) -> None:
    want = {k: Desired(k, *v) for k, v in desired.items()}
    have = {k: LedgerView(k, s, h, 1, approved, manual, reason) for k, (s, h, approved, manual, reason) in ledger.items()}
    actions = diff(want, have)
    assert sorted(a.source_key for a in actions) == sorted(desired.keys() | ledger.keys())
    for action in actions:
        w, r = want.get(action.source_key), have.get(action.source_key)
        if r is not None and r.manual:
            assert action.kind is ActionKind.unchanged
            continue
        if action.kind is ActionKind.create:
            assert w is not None and w.content_hash is not None
        if action.kind is ActionKind.skip:
            assert w is not None and w.skip_reason is not None
        if action.kind in (ActionKind.update, ActionKind.delete):
            assert r is not None and r.status == "posted" and not r.approved
        if action.kind is ActionKind.needs_review:
            assert r is not None and r.status == "posted" and r.approved
        if action.kind is ActionKind.retire:
            assert w is None and r is not None and r.status in ("skipped", "failed")
        assert (action.kind is ActionKind.reconcile) == (r is not None and r.status in ("pending", "unknown"))
