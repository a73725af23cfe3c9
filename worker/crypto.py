"""Credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256) from the `cryptography` package.

Model columns of type `EncryptedText` hold ciphertext in the database and plaintext in Python, so no code path
handles a stored secret by hand. Keys rotate (DESIGN §8): STSYNC_SECRET_KEYS lists them newest first; the newest
encrypts, every one decrypts, and `reencrypt_all` moves every stored secret to the newest so old keys can go.
"""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from worker.settings import MAKE_A_KEY, get_settings


class SecretKeyMismatch(RuntimeError):
    """A key is not a Fernet key, or no configured key opens a stored secret."""


def new_secret_key() -> str:
    """A fresh Fernet key (32 random bytes, url-safe base64), for `stsync init` and key rotation."""
    return Fernet.generate_key().decode()


def encrypt(plaintext: str) -> str:
    return _keyring(tuple(get_settings().secret_keys())).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _keyring(tuple(get_settings().secret_keys())).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise SecretKeyMismatch(
            "A stored credential cannot be decrypted with any configured key: it was stored under a key that is "
            "no longer set. Put that key back in STSYNC_SECRET_KEYS (comma-separated, newest first, e.g. "
            "STSYNC_SECRET_KEYS=<new key>,<old key>) and run `stsync rotate-key`, or run `stsync connect ...` "
            "again to store the credentials under the current key."
        ) from exc


def reencrypt_all(session: Session) -> int:
    """Rewrite every stored secret (every `EncryptedText` column of every row) under the newest key.

    Rows are locked while they are rewritten, so a token refreshed by a running sync at the same moment is not
    overwritten with its old value. Nothing is committed here: the caller commits, so a secret no configured key
    opens (SecretKeyMismatch) leaves every row as it was. Returns how many secrets were re-encrypted.
    """
    # The models import this module for EncryptedText, so they are read here, not at import time.
    from worker.models import Base

    rewritten = 0
    for table in Base.metadata.sorted_tables:
        columns = [column for column in table.columns if isinstance(column.type, EncryptedText)]
        if columns:
            rewritten += _reencrypt_table(session, table, columns)
    return rewritten


def _reencrypt_table(session: Session, table: sa.Table, columns: list[sa.Column]) -> int:
    """Read each secret through its column type (decrypted with any key) and write it back (encrypted with the
    newest)."""
    keys = list(table.primary_key.columns)
    rows = session.execute(sa.select(*keys, *columns).with_for_update()).all()
    rewritten = 0
    for row in rows:
        values = {column.name: row._mapping[column] for column in columns if row._mapping[column] is not None}
        if not values:
            continue
        match = sa.and_(*(key == row._mapping[key] for key in keys))
        session.execute(table.update().where(match).values(**values))
        rewritten += len(values)
    return rewritten


@lru_cache(maxsize=4)
def _keyring(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(key) for key in keys])


def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError) as exc:
        raise SecretKeyMismatch(
            "A key in STSYNC_SECRET_KEYS / STSYNC_SECRET_KEY is not a valid Fernet key (32 url-safe "
            f"base64-encoded bytes). Make one with\n{MAKE_A_KEY}"
        ) from exc


class EncryptedText(TypeDecorator[str]):
    """A text column whose values are encrypted before they reach the database."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect) -> str | None:
        return None if value is None else decrypt(value)
