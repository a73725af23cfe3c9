"""An entry's identity comes from its source (issue 18): stable across databases, and older entries recognised."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.sync.identity import matches, origin_data, origin_id, parse_origin

KEY = "1637332273850582:2026-11-17"


def test_origin_id_is_stable_positive_and_fits_a_bigint() -> None:
    assert origin_id(42, KEY) == origin_id(42, KEY)
    assert 0 < origin_id(42, KEY) < 2**63
    assert origin_id(42, KEY) != origin_id(43, KEY), "another company's entry is another identity"


@given(st.integers(min_value=1, max_value=2**62), st.integers(min_value=1, max_value=10**16))
def test_origin_id_is_always_a_positive_bigint(company: int, event: int) -> None:
    assert 0 < origin_id(company, f"{event}:2026-01-01") < 2**63


def test_our_entry_is_recognised_by_both_fields() -> None:
    entry = {"origin_id": origin_id(42, KEY), "origin_data": origin_data(KEY, "abc")}
    assert parse_origin(entry).source_key == KEY and parse_origin(entry).content_hash == "abc"
    assert matches(entry, 42, KEY)
    assert not matches({**entry, "origin_id": 7}, 42, KEY), "a sequence id in our format is not our entry"
    assert not matches(entry, 42, "1:2026-11-17")


def test_an_entry_posted_before_the_identity_format_is_recognised_by_its_source_key() -> None:
    legacy = {"origin_id": 398, "origin_data": f"{KEY}|abc"}
    assert matches(legacy, 42, KEY)
    assert parse_origin(legacy).content_hash == "abc"


def test_entries_typed_in_by_a_person_are_not_ours() -> None:
    for entry in ({"origin_id": None, "origin_data": None}, {"origin_data": "payroll import 7"},
                  {"origin_data": "x|y|z"}, {}):
        assert parse_origin(entry) is None
        assert not matches(entry, 42, KEY)
