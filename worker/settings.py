"""Typed settings read from the environment (DESIGN §8), one place for every knob."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The demo runs on embedded defaults, so it needs a key; anything else must bring its own.
DEMO_SECRET_KEY = "c3RzeW5jIGRlbW8ga2V5OiBub3QgZm9yIHByb2QhISE="  # 32 bytes, public on purpose


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///stsync.db"
    celery_broker_url: str = "redis://localhost:6379/0"
    redis_url: str | None = Field(
        default=None, description="Redis for the shared Procore rate budget; defaults to the broker URL"
    )
    servicetrade_api_url: str = "https://api.servicetrade.com/api"
    procore_api_url: str = "https://api.procore.com"
    procore_login_url: str = "https://login.procore.com"
    stsync_secret_key: SecretStr | None = None
    stsync_demo: bool = False
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"

    http_timeout_s: float = 30.0
    sync_soft_time_limit_s: int = 1500
    sync_hard_time_limit_s: int = 1800
    default_lookback_days: int = 14
    procore_company_cache_s: float = Field(
        default=60.0, ge=0,
        description="how long a worker reuses a company's configuration, cost types and rounding rule (0: never)",
    )
    flower_basic_auth: SecretStr | None = None
    dispatch_interval_s: float = Field(default=60.0, description="how often beat runs the dispatcher")

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

    def secret_key(self) -> str:
        """The Fernet key that encrypts credentials at rest.

        Outside the demo a missing key is an error that says how to make one.
        """
        if self.stsync_secret_key is not None and self.stsync_secret_key.get_secret_value():
            return self.stsync_secret_key.get_secret_value()
        if self.stsync_demo:
            return DEMO_SECRET_KEY
        raise MissingSecretKey()


class MissingSecretKey(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            "STSYNC_SECRET_KEY is not set. Stored credentials are encrypted with it. Make one with\n"
            "  python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'\n"
            "and export STSYNC_SECRET_KEY=<that value> (keep it safe: without it the stored credentials are unreadable)."
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests and the CLI change the environment)."""
    get_settings.cache_clear()
