"""Credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256) from the `cryptography` package.

Model columns of type `EncryptedText` hold ciphertext in the database and plaintext in Python, so no code path
handles a stored secret by hand.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

from worker.settings import get_settings


class SecretKeyMismatch(RuntimeError):
    pass


@lru_cache(maxsize=4)
def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError) as exc:
        raise SecretKeyMismatch(
            "STSYNC_SECRET_KEY is not a valid Fernet key (32 url-safe base64-encoded bytes). Make one with\n"
            "  python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from exc


def encrypt(plaintext: str) -> str:
    return _fernet(get_settings().secret_key()).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet(get_settings().secret_key()).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise SecretKeyMismatch(
            "A stored credential cannot be decrypted with the current STSYNC_SECRET_KEY: the key changed. "
            "Restore the old key, or run `stsync connect ...` again to store the credentials under the new one."
        ) from exc


class EncryptedText(TypeDecorator[str]):
    """A text column whose values are encrypted before they reach the database."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect) -> str | None:
        return None if value is None else decrypt(value)
