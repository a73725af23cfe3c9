"""structlog, configured once: JSON or console, ISO timestamps, context variables, stdlib routed through it,
and a redaction processor so that no secret reaches a log line, exception text included."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any

import structlog

REDACTED = "[REDACTED]"

# Keys whose values are secrets wherever they appear (event dicts, nested dicts, headers).
_SECRET_KEY = re.compile(
    r"(pass(word)?|secret|token|authorization|cookie|api[_-]?key|phpsessid|set-cookie|credential|fernet)",
    re.IGNORECASE,
)
# Secrets embedded in free text: `password=...`, `"refresh_token": "..."`, `Bearer ...`, `PHPSESSID=...`,
# and the password of a URL (`postgresql://user:pw@host`).
_TEXT_PATTERNS = [
    re.compile(
        r"""(?P<k>(?:pass(?:word)?|client_secret|secret|access_token|refresh_token|auth_?token|token|phpsessid|api_?key)"""
        r"""['"]?\s*[:=]\s*['"]?)(?P<v>[^\s'",;&}]+)""",
        re.IGNORECASE,
    ),
    re.compile(r"(?P<k>\b(?:Bearer|Basic)\s+)(?P<v>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE),
    re.compile(r"(?P<k>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<v>[^@\s]+)(?=@)", re.IGNORECASE),
]

_known_secrets: set[str] = set()
_known_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is masked wherever it appears, even in text no pattern would catch."""
    if value and len(value) >= 4:
        with _known_lock:
            _known_secrets.add(value)


def redact_text(text: str) -> str:
    # Patterns first: a registered secret that happens to be a word of a key ("secret" in `client_secret=`) must
    # not break the key apart before its value is masked.
    for pattern in _TEXT_PATTERNS:
        text = pattern.sub(lambda m: m.group("k") + REDACTED, text)
    with _known_lock:
        known = sorted(_known_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_value(key: str | None, value: Any) -> Any:
    if key is not None and _SECRET_KEY.search(key) and value not in (None, "", REDACTED):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [redact_value(None, v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(repr(value))
    return value


def redact_processor(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in list(event_dict):
        if key == "event":
            event_dict[key] = redact_value(None, event_dict[key])
        else:
            event_dict[key] = redact_value(key, event_dict[key])
    return event_dict


_configured = False


# Loggers keep their configuration from their first use (fast); tests that capture log lines switch this off.
CACHE_LOGGERS = True


def configure_logging(log_format: str | None = None, level: str | None = None, *, force: bool = False) -> None:
    """Configure structlog and the standard library once per process. Unless told otherwise (arguments, then
    LOG_FORMAT and LOG_LEVEL), a person at a terminal gets short console lines at WARNING and everything else
    (workers, pipes, files) JSON at INFO."""
    global _configured
    if _configured and not force:
        return
    from worker.settings import get_settings

    settings = get_settings()
    on_terminal = sys.stderr.isatty()
    log_format = log_format or settings.log_format or ("console" if on_terminal else "json")
    level = (level or settings.log_level or ("WARNING" if on_terminal else "INFO")).upper()

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(default=str)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=on_terminal)
    )
    structlog.configure(
        processors=[*shared[:-3], structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=CACHE_LOGGERS,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared[:-3],
        processors=[
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_processor,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_stsync", False):
            root.removeHandler(old)
    handler._stsync = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "kombu", "amqp", "celery.utils.functional"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    _configured = True


def mask_url(url: str) -> str:
    """A database or broker URL with its password masked, for log lines and messages."""
    return _TEXT_PATTERNS[2].sub(lambda m: m.group("k") + REDACTED, url)
