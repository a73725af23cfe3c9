"""Secrets never reach a log line: keys, free text, URLs, exception messages and registered values."""

from __future__ import annotations

import io
import logging

import structlog

from worker.logging import REDACTED, configure_logging, mask_url, redact_text, register_secret


def _capture() -> io.StringIO:
    configure_logging("json", "DEBUG", force=True)
    stream = io.StringIO()
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_stsync", False))
    handler.setStream(stream)
    return stream


def test_secret_keys_and_text_patterns_are_redacted() -> None:
    stream = _capture()
    log = structlog.get_logger("t")
    log.info("call", password="p4ssw0rd-1", headers={"Authorization": "Bearer abc.def.ghi", "Cookie": "PHPSESSID=x"},
             body="grant_type=refresh_token&refresh_token=rt-123456&client_secret=cs-98765",
             url="postgresql+psycopg://stsync:db-pass-777@db/stsync")
    out = stream.getvalue()
    for secret in ("p4ssw0rd-1", "abc.def.ghi", "rt-123456", "cs-98765", "db-pass-777"):
        assert secret not in out
    assert REDACTED in out


def test_exception_messages_are_redacted() -> None:
    stream = _capture()
    register_secret("registered-secret-42")
    try:
        raise RuntimeError("login failed for password=hunter2hunter and registered-secret-42")
    except RuntimeError:
        structlog.get_logger("t").exception("boom")
    out = stream.getvalue()
    assert "hunter2hunter" not in out and "registered-secret-42" not in out
    assert "login failed" in out


def test_standard_library_logs_go_through_the_same_redaction() -> None:
    stream = _capture()
    logging.getLogger("third.party").warning("token: tok-abcdef and Basic dXNlcjpwYXNz")
    out = stream.getvalue()
    assert "tok-abcdef" not in out and "dXNlcjpwYXNz" not in out
    assert '"logger": "third.party"' in out


def test_context_variables_and_iso_timestamps_are_in_every_line() -> None:
    stream = _capture()
    with structlog.contextvars.bound_contextvars(run_id=7, project_id=99):
        structlog.get_logger("t").info("hello")
    out = stream.getvalue()
    assert '"run_id": 7' in out and '"project_id": 99' in out and '"timestamp": "20' in out


def test_url_password_masked() -> None:
    assert mask_url("redis://:pw-xyz@localhost:6379/0") == f"redis://:{REDACTED}@localhost:6379/0"
    assert "s3cret" not in redact_text("postgresql://u:s3cret@h/db")


def test_a_registered_secret_that_is_a_word_of_a_key_does_not_unmask_the_value() -> None:
    from worker import logging as stsync_logging

    stream = _capture()
    register_secret("secret")
    try:
        structlog.get_logger("t").info("call", body="grant_type=client_credentials&client_secret=cs-4242-4242")
    finally:
        stsync_logging._known_secrets.discard("secret")  # the word stays readable in later tests' lines
    assert "cs-4242-4242" not in stream.getvalue()
