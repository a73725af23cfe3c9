"""Typed settings (DESIGN §8), one place for every knob: read from the environment, then from the config file
that `stsync init` writes (the environment wins)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from platformdirs import user_config_dir, user_data_dir
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The demo runs on embedded defaults, so it needs a key; anything else must bring its own.
DEMO_SECRET_KEY = "c3RzeW5jIGRlbW8ga2V5OiBub3QgZm9yIHByb2QhISE="  # 32 bytes, public on purpose
MAKE_A_KEY = "  python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
APP_NAME = "stsync"


def config_path() -> Path:
    """The config file: the path STSYNC_CONFIG names, or `stsync.env` in the user's config folder."""
    named = os.environ.get("STSYNC_CONFIG")
    return Path(named).expanduser() if named else Path(user_config_dir(APP_NAME)) / "stsync.env"


def default_database_url() -> str:
    """SQLite in the user's data folder, so that every working folder sees the same database."""
    return f"sqlite:///{Path(user_data_dir(APP_NAME)) / 'stsync.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    database_url: str = Field(default_factory=default_database_url)
    celery_broker_url: str = "redis://localhost:6379/0"
    redis_url: str | None = Field(
        default=None, description="Redis for the shared Procore rate budget; defaults to the broker URL"
    )
    servicetrade_api_url: str = "https://api.servicetrade.com/api"
    procore_api_url: str = "https://api.procore.com"
    procore_login_url: str = "https://login.procore.com"
    stsync_secret_key: SecretStr | None = None
    stsync_secret_keys: SecretStr | None = Field(
        default=None, description="comma-separated Fernet keys, newest first: the newest encrypts, all decrypt"
    )
    stsync_demo: bool = False
    # Unset: short console lines at WARNING on a terminal, JSON at INFO elsewhere (workers, pipes, files).
    log_format: Literal["json", "console"] | None = None
    log_level: str | None = None

    http_timeout_s: float = 30.0
    sync_soft_time_limit_s: int = 1500
    sync_hard_time_limit_s: int = 1800
    default_lookback_days: int = 14
    procore_company_cache_s: float = Field(
        default=60.0, ge=0,
        description="how long a worker reuses a company's configuration, cost types and rounding rule (0: never)",
    )
    flower_basic_auth: SecretStr | None = None
    flower_address: str = Field(default="127.0.0.1", description="where Flower listens unless told otherwise")
    dispatch_interval_s: float = Field(default=60.0, description="how often beat runs the dispatcher")

    max_window_days: int = Field(default=400, gt=0, description="the longest sync window a request may ask for")
    max_event_ids: int = Field(default=2000, gt=0, description="the most clock events one manual sync may name")
    smtp_url: SecretStr | None = Field(default=None, description="where digests are sent from; None: no e-mail")
    digest_from: str = "stsync@localhost"
    metrics_token: SecretStr | None = Field(default=None, description="bearer token that /metrics requires")
    web_bind: str = "127.0.0.1:8000"
    web_secure_cookies: bool = Field(default=False, description="session cookies only over HTTPS")
    lease_ttl_s: int = Field(default=90, gt=0, description="a run lease expires this long after its last heartbeat")
    lease_heartbeat_s: int = Field(default=20, gt=0, description="how often a running sync renews its lease")
    max_run_attempts: int = Field(default=3, gt=0, description="a run whose worker died is tried this often")
    procore_post_concurrency: int = Field(default=4, gt=0, le=16,
                                          description="bulk chunks of one run in flight at once (PostgreSQL only)")
    webhook_max_body_bytes: int = Field(default=1_000_000, gt=0)
    webhook_debounce_s: int = Field(
        default=20, ge=0, description="webhooks for one project within this many seconds make one sync"
    )

    @model_validator(mode="after")
    def _heartbeat_renews_before_the_lease_expires(self) -> Settings:
        if self.lease_heartbeat_s >= self.lease_ttl_s:
            raise ValueError(
                f"LEASE_HEARTBEAT_S ({self.lease_heartbeat_s}) must be shorter than LEASE_TTL_S ({self.lease_ttl_s}), "
                "or a healthy run loses its lease"
            )
        return self

    @property
    def rate_budget_url(self) -> str | None:
        """Where the shared Procore rate budget lives; None means in-process (SQLite demo)."""
        if self.redis_url:
            return self.redis_url
        if self.is_sqlite:
            return None
        return self.celery_broker_url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def secret_keys(self) -> list[str]:
        """The Fernet keys for credentials at rest, newest first: the first encrypts, every one decrypts.

        STSYNC_SECRET_KEYS lists them for a rotation; a STSYNC_SECRET_KEY beside it is kept as the oldest, so
        adding the new list before dropping the old single key never makes a stored secret unreadable.
        Outside the demo no key at all is an error that says how to make one.
        """
        keys = _split_keys(self.stsync_secret_keys)
        keys += [key for key in _split_keys(self.stsync_secret_key) if key not in keys]
        if keys:
            return keys
        if self.stsync_demo:
            return [DEMO_SECRET_KEY]
        raise MissingSecretKey()

    def secret_key(self) -> str:
        """The newest key: the one that encrypts."""
        return self.secret_keys()[0]


def _split_keys(value: SecretStr | None) -> list[str]:
    if value is None:
        return []
    return [key.strip() for key in value.get_secret_value().split(",") if key.strip()]


class MissingSecretKey(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            "STSYNC_SECRET_KEY is not set (nor STSYNC_SECRET_KEYS). Stored credentials are encrypted with it. "
            "Run `stsync init` to write a config file with a new key, or make one with\n"
            f"{MAKE_A_KEY}\nand export STSYNC_SECRET_KEY=<that value> "
            "(keep it safe: without it the stored credentials are unreadable)."
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    path = config_path()
    return Settings(_env_file=path if path.is_file() else None)  # type: ignore[call-arg]


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
