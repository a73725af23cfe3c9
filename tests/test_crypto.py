"""Key rotation: the newest of STSYNC_SECRET_KEYS encrypts, every key decrypts, `reencrypt_all` moves every stored
secret to the newest key, and a secret no key opens is an error that says which variable to set."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from pydantic import ValidationError

from worker.crypto import SecretKeyMismatch, decrypt, encrypt, new_secret_key, reencrypt_all
from worker.models import Connection
from worker.settings import MissingSecretKey, Settings, reset_settings

OLD_KEY = new_secret_key()
NEW_KEY = new_secret_key()
SECRET_COLUMNS = ("procore_client_secret", "procore_access_token", "procore_refresh_token", "st_password",
                  "st_client_secret", "st_session_token")


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch):
    """Set the key variables for one step of a test; the session's own key comes back afterwards."""

    def use(*, single: str | None = None, many: str | None = None) -> None:
        for name, value in (("STSYNC_SECRET_KEY", single), ("STSYNC_SECRET_KEYS", many)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        reset_settings()

    yield use
    reset_settings()


def test_new_secret_key_makes_distinct_valid_fernet_keys() -> None:
    first, second = new_secret_key(), new_secret_key()
    assert first != second
    assert Fernet(first.encode()).decrypt(Fernet(first.encode()).encrypt(b"x")) == b"x"


def test_the_newest_key_encrypts_and_older_keys_still_decrypt(keys) -> None:
    keys(single=OLD_KEY)
    stored_under_old = encrypt("client-secret-1")
    keys(many=f"{NEW_KEY},{OLD_KEY}")
    stored_under_new = encrypt("client-secret-2")
    assert Fernet(NEW_KEY.encode()).decrypt(stored_under_new.encode()) == b"client-secret-2"
    with pytest.raises(InvalidToken):
        Fernet(OLD_KEY.encode()).decrypt(stored_under_new.encode())
    assert decrypt(stored_under_old) == "client-secret-1"
    assert decrypt(stored_under_new) == "client-secret-2"


def test_a_single_key_beside_the_list_is_kept_as_the_oldest() -> None:
    settings = Settings(stsync_secret_keys=f" {NEW_KEY} , ", stsync_secret_key=OLD_KEY)
    assert settings.secret_keys() == [NEW_KEY, OLD_KEY]
    assert settings.secret_key() == NEW_KEY
    assert Settings(stsync_secret_keys=f"{NEW_KEY},{OLD_KEY}", stsync_secret_key=NEW_KEY).secret_keys() == [
        NEW_KEY, OLD_KEY]


def test_no_key_at_all_names_both_variables() -> None:
    with pytest.raises(MissingSecretKey, match=r"STSYNC_SECRET_KEY is not set \(nor STSYNC_SECRET_KEYS\)"):
        Settings(stsync_secret_key=None, stsync_secret_keys=None).secret_keys()


def test_a_secret_no_configured_key_opens_says_which_variable_to_set(keys) -> None:
    keys(single=OLD_KEY)
    stored = encrypt("st-password")
    keys(single=NEW_KEY)
    with pytest.raises(SecretKeyMismatch) as caught:
        decrypt(stored)
    message = str(caught.value)
    assert "STSYNC_SECRET_KEYS=<new key>,<old key>" in message
    assert "stsync rotate-key" in message
    assert OLD_KEY not in message and NEW_KEY not in message


def test_a_key_that_is_not_a_fernet_key_is_named_without_showing_it(keys) -> None:
    keys(many=f"{NEW_KEY},not-a-key")
    with pytest.raises(SecretKeyMismatch, match="STSYNC_SECRET_KEYS / STSYNC_SECRET_KEY is not a valid") as caught:
        encrypt("x")
    assert "not-a-key" not in str(caught.value)


def _raw_secrets(db_session, connection_id: int) -> dict[str, str | None]:
    row = db_session.execute(
        sa.text(f"SELECT {', '.join(SECRET_COLUMNS)} FROM connections WHERE id = :id"), {"id": connection_id}
    ).one()
    return dict(zip(SECRET_COLUMNS, row, strict=True))


def _connection(db_session, company_id: int, **secrets: str) -> Connection:
    conn = Connection(procore_company_id=company_id, procore_client_id="client", **secrets)
    db_session.add(conn)
    db_session.flush()
    return conn


def test_reencrypt_all_moves_every_stored_secret_to_the_newest_key(empty_db_session, keys) -> None:
    db_session = empty_db_session  # every stored secret is rewritten: only this test's rows may be there
    keys(single=OLD_KEY)
    full = _connection(db_session, 9101, procore_client_secret="cs-1", procore_access_token="at-1",
                       procore_refresh_token="rt-1", st_password="pw-1", st_client_secret="stcs-1",
                       st_session_token="sess-1")
    sparse = _connection(db_session, 9102, procore_client_secret="cs-2")
    keys(many=f"{NEW_KEY},{OLD_KEY}")

    assert reencrypt_all(db_session) == 7

    newest = Fernet(NEW_KEY.encode())
    for conn, expected in ((full, {"procore_client_secret": "cs-1", "procore_access_token": "at-1",
                                   "procore_refresh_token": "rt-1", "st_password": "pw-1",
                                   "st_client_secret": "stcs-1", "st_session_token": "sess-1"}),
                           (sparse, {"procore_client_secret": "cs-2"})):
        raw = _raw_secrets(db_session, conn.id)
        assert {name: newest.decrypt(value.encode()).decode() for name, value in raw.items() if value} == expected
        assert all(raw[name] is None for name in SECRET_COLUMNS if name not in expected)

    # The old key can go now: everything reads with the new key alone.
    keys(single=NEW_KEY)
    db_session.expire_all()
    assert db_session.get(Connection, full.id).procore_refresh_token == "rt-1"


def test_reencrypt_all_fails_on_a_secret_no_key_opens_and_names_the_variable(db_session, keys) -> None:
    keys(single=OLD_KEY)
    conn = _connection(db_session, 9103, procore_client_secret="cs-3")
    before = _raw_secrets(db_session, conn.id)
    keys(single=NEW_KEY)
    with pytest.raises(SecretKeyMismatch, match="STSYNC_SECRET_KEYS"):
        reencrypt_all(db_session)
    assert _raw_secrets(db_session, conn.id) == before


def test_new_settings_have_their_documented_defaults() -> None:
    settings = Settings()
    assert (settings.max_window_days, settings.max_event_ids) == (400, 2000)
    assert settings.smtp_url is None and settings.metrics_token is None
    assert settings.digest_from == "stsync@localhost"
    assert (settings.web_bind, settings.web_secure_cookies) == ("127.0.0.1:8000", False)
    assert settings.flower_address == "127.0.0.1"
    assert (settings.lease_ttl_s, settings.lease_heartbeat_s) == (90, 20)
    assert (settings.webhook_max_body_bytes, settings.webhook_debounce_s) == (1_000_000, 20)


def test_a_lease_heartbeat_not_shorter_than_the_lease_is_refused() -> None:
    with pytest.raises(ValidationError, match="LEASE_HEARTBEAT_S"):
        Settings(lease_ttl_s=30, lease_heartbeat_s=30)
