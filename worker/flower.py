"""Flower for this project's Celery app, never without a password.

    python -m worker.flower [extra flower options, e.g. --address=0.0.0.0 --port=5556]

Refuses to start (exit 2) unless FLOWER_BASIC_AUTH holds `user:password` (several comma-separated). The
credentials reach Flower through its environment, never its argv, which every process on the host can read.
Flower listens on FLOWER_ADDRESS (127.0.0.1) and port 5555 unless an extra option says otherwise.
"""

from __future__ import annotations

import os
import sys

from worker.settings import get_settings

DEFAULT_PORT = 5555


class FlowerRefused(ValueError):
    """Flower must not start as asked; the message is one line for the operator."""


def basic_auth_from(value: str | None) -> str:
    """The validated FLOWER_BASIC_AUTH value: one or more comma-separated `user:password` pairs."""
    if not value or not value.strip():
        raise FlowerRefused("FLOWER_BASIC_AUTH is not set: give Flower a login as FLOWER_BASIC_AUTH=user:password")
    pairs = [pair.strip() for pair in value.split(",")]
    for pair in pairs:
        user, _, password = pair.partition(":")
        if not user or not password:
            raise FlowerRefused(
                "FLOWER_BASIC_AUTH must be user:password (several separated by commas), each with a user and a "
                "non-empty password"
            )
    return ",".join(pairs)


def flower_command(extra: list[str], address: str) -> list[str]:
    """`celery -A worker.app flower` with the default address and port first, so extra options override them."""
    if any(arg.startswith("--basic-auth") or arg.startswith("--basic_auth") for arg in extra):
        raise FlowerRefused("give the login in FLOWER_BASIC_AUTH, not as --basic-auth: argv is visible to anyone")
    return [sys.executable, "-m", "celery", "-A", "worker.app", "flower", f"--address={address}",
            f"--port={DEFAULT_PORT}", *extra]


def main(argv: list[str]) -> int:
    settings = get_settings()
    auth = settings.flower_basic_auth.get_secret_value() if settings.flower_basic_auth else None
    try:
        env = {**os.environ, "FLOWER_BASIC_AUTH": basic_auth_from(auth)}
        command = flower_command(argv, settings.flower_address)
    except FlowerRefused as refused:
        print(f"flower: refusing to start: {refused}", file=sys.stderr)
        return 2
    os.execve(command[0], command, env)  # replaces this process: Flower gets its signals directly


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
