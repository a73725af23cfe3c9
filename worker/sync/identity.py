"""An entry's identity in Procore, derived from its source, never from a database sequence: a restored, moved or
empty database (or a second installation) finds the entries it made and posts nothing twice.

Format (documented in docs/api-assumptions.md):
- `origin_id`: the first 63 bits of sha256("stsync:<Procore company id>:<source key>"), a positive bigint;
- `origin_data`: `stsync:1|<source key>|<content hash>`, where the source key is `<clock-in event id>:<local date>`
  and the content hash the sha256 of the payload sent.
Entries posted before this format carry `origin_data` `<source key>|<content hash>` and the ledger row's sequence
id as `origin_id`: they are recognised by their source key alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ORIGIN_PREFIX = "stsync:1"
_SOURCE_KEY = re.compile(r"^\d+:\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Origin:
    """What an entry's origin fields say about where it came from."""

    source_key: str
    content_hash: str | None


def origin_id(company_id: int, source_key: str) -> int:
    digest = hashlib.sha256(f"stsync:{company_id}:{source_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1 or 1


def origin_data(source_key: str, content_hash: str | None) -> str:
    return f"{ORIGIN_PREFIX}|{source_key}|{content_hash}"


def parse_origin(entry: Mapping[str, Any]) -> Origin | None:
    """The source an entry of ours came from; None for an entry a person typed in (or another integration made)."""
    data = entry.get("origin_data")
    if not isinstance(data, str):
        return None
    parts = data.split("|")
    if len(parts) == 3 and parts[0] == ORIGIN_PREFIX:
        parts = parts[1:]
    if len(parts) != 2 or not _SOURCE_KEY.match(parts[0]):
        return None
    return Origin(parts[0], None if parts[1] in ("", "None") else parts[1])


def matches(entry: Mapping[str, Any], company_id: int, source_key: str) -> bool:
    """Whether a Procore entry is the one stsync makes for `source_key`: by the identity it was posted with."""
    origin = parse_origin(entry)
    if origin is None:
        return False
    try:
        sent_id = int(entry.get("origin_id"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        sent_id = None
    # Our own format carries both fields; the older one only the source key is good for (its id is a sequence).
    own_format = str(entry.get("origin_data", "")).startswith(ORIGIN_PREFIX + "|")
    return origin.source_key == source_key and (not own_format or sent_id == origin_id(company_id, source_key))
