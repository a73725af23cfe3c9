"""Text from ServiceTrade and Procore made fit to store: one odd record (a name with a NUL byte, a description of
a thousand characters) must never fail the write that every project's run shares."""

from __future__ import annotations

import re
from typing import Any

import structlog

log = structlog.get_logger("stsync.store")

# C0 and C1 control characters but tab; PostgreSQL refuses NUL in text outright.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def clean_text(value: Any, limit: int, what: str) -> str:
    """`value` as text without control characters, cut to `limit` characters; a warning names what was changed."""
    text = str(value)
    cleaned = _CONTROL.sub(" ", text).strip()
    if len(cleaned) > limit:
        log.warning("store.text_cut", what=what, length=len(cleaned), limit=limit, start=cleaned[:40])
        cleaned = cleaned[:limit]
    elif cleaned != text.strip():
        log.warning("store.text_cleaned", what=what, start=cleaned[:40])
    return cleaned
