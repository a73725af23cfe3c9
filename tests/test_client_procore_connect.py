"""Connecting to Procore as a person (P-13, the authorization-code grant) and registering Procore webhooks (P-14),
against the scripted HTTP server: the emulator's default refuses the authorization-code grant and has no hooks."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests import helpers
from tests.helpers import Sleeps, Stub
from worker.clients.errors import CredentialsRejected, NeedsReauthorization, OutcomeUnknown, ValidationFailed
from worker.clients.procore import (
    MemoryTokenStore,
    ProcoreClient,
    TokenSet,
    authorize_url,
    exchange_authorization_code,
)

stub = helpers.stub  # the scripted server, as a fixture
COMPANY = 4242
REDIRECT = "https://stsync.example/connect/procore/callback"
NOW = 1_780_000_000.0
HEADERS = {"Authorization": "Bearer hook-secret-7f3a9c"}


def form(request: dict[str, Any]) -> dict[str, list[str]]:
    return parse_qs(request["body"].decode())


def sent_json(stub: Stub, index: int = -1) -> Any:
    return json.loads(stub.received[index]["body"])


def exchange(stub: Stub, code: str = "code-4b1d") -> TokenSet:
    return exchange_authorization_code(stub.url, "cid", "client-secret-1", code, REDIRECT, sleep=Sleeps(),
                                       timeout=2, clock=lambda: NOW)


def on_stub(stub: Stub) -> ProcoreClient:
    """A client holding a fresh token: no token call before the scripted ones."""
    tokens = TokenSet("access-token-1", None, datetime.now(UTC) + timedelta(hours=1))
    return ProcoreClient(stub.url, stub.url, COMPANY, client_id="cid", client_secret="csecret",
                         token_store=MemoryTokenStore(tokens), sleep=Sleeps(), timeout=2)


# ------------------------------------------------------------------------------------------------ P-13


def test_the_authorize_url_asks_for_a_code_for_our_client_redirect_and_state() -> None:
    url = authorize_url("https://login.procore.com/", "client 1", REDIRECT, "st4te&x")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "login.procore.com", "/oauth/authorize")
    assert parse_qs(parts.query) == {"response_type": ["code"], "client_id": ["client 1"],
                                     "redirect_uri": [REDIRECT], "state": ["st4te&x"]}


def test_a_code_is_exchanged_once_for_tokens_that_are_then_refreshed_like_any_others(stub: Stub) -> None:
    stub.answer(200, {"access_token": "access-a1", "token_type": "bearer", "expires_in": 5400,
                      "refresh_token": "refresh-r1", "created_at": int(NOW)})
    tokens = exchange(stub)
    assert tokens == TokenSet("access-a1", "refresh-r1", datetime.fromtimestamp(NOW + 5400, UTC))
    assert form(stub.received[0]) == {"grant_type": ["authorization_code"], "code": ["code-4b1d"],
                                      "redirect_uri": [REDIRECT], "client_id": ["cid"],
                                      "client_secret": ["client-secret-1"]}
    assert stub.received[0]["path"] == "/oauth/token"
    # Stored like today's user connections: the next call that finds the access token stale refreshes with it.
    store = MemoryTokenStore(TokenSet(tokens.access_token, tokens.refresh_token, datetime.fromtimestamp(0, UTC)))
    stub.answer(200, {"access_token": "access-a2", "expires_in": 5400, "refresh_token": "refresh-r2"})
    stub.answer(200, {"projects_timecard_in_out_enabled": []})
    pc = ProcoreClient(stub.url, stub.url, COMPANY, client_id="cid", client_secret="client-secret-1",
                       token_store=store, sleep=Sleeps(), timeout=2, clock=time.time)
    pc.company_configuration()
    assert form(stub.received[1])["refresh_token"] == ["refresh-r1"]
    assert store.tokens is not None and store.tokens.refresh_token == "refresh-r2"


def test_a_refused_code_needs_the_person_to_connect_again_and_is_not_resent(stub: Stub) -> None:
    stub.answer(400, {"error": "invalid_grant", "error_description": "The provided authorization grant is invalid"})
    with pytest.raises(NeedsReauthorization, match="connect to Procore again") as info:
        exchange(stub, code="code-spent-99")
    assert len(stub.received) == 1 and "code-spent-99" not in str(info.value)


def test_a_refused_client_on_the_code_exchange_is_credentials_rejected(stub: Stub) -> None:
    stub.answer(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
    with pytest.raises(CredentialsRejected, match="check the client id and secret"):
        exchange(stub)


def test_a_lost_answer_to_the_code_exchange_is_outcome_unknown_and_not_resent(stub: Stub) -> None:
    stub.drop()
    with pytest.raises(OutcomeUnknown):
        exchange(stub)
    assert len(stub.received) == 1


# ------------------------------------------------------------------------------------------------ P-14


def test_a_company_hook_is_created_with_our_destination_and_secret_header(stub: Stub) -> None:
    hook = {"id": 71, "api_version": "v2", "namespace": "stsync", "destination_url": "https://stsync.example/h"}
    stub.answer(201, hook)
    assert on_stub(stub).create_hook("https://stsync.example/h", HEADERS) == hook
    request = stub.received[-1]
    assert (request["method"], request["path"]) == ("POST", "/rest/v1.0/webhooks/hooks")
    assert request["headers"]["Procore-Company-Id"] == str(COMPANY)
    assert sent_json(stub) == {"company_id": COMPANY, "hook": {
        "api_version": "v2", "namespace": "stsync", "destination_url": "https://stsync.example/h",
        "destination_headers": HEADERS}}


def test_a_project_hook_names_the_project_instead_of_the_company(stub: Stub) -> None:
    stub.answer(201, {"id": 72})
    on_stub(stub).create_hook("https://stsync.example/h", HEADERS, project_id=11)
    body = sent_json(stub)
    assert body["project_id"] == 11 and "company_id" not in body


def test_hooks_are_listed_updated_and_deleted(stub: Stub) -> None:
    stub.answer(200, [{"id": 71}, {"id": 73}]).answer(200, {"id": 71, "destination_url": "https://new.example/h"})
    stub.answer(204)
    pc = on_stub(stub)
    assert [h["id"] for h in pc.list_hooks()] == [71, 73]
    assert stub.received[0]["query"]["company_id"] == [str(COMPANY)]
    assert pc.update_hook(71, destination_url="https://new.example/h")["destination_url"] == "https://new.example/h"
    assert (stub.received[1]["method"], stub.received[1]["path"]) == ("PATCH", "/rest/v1.0/webhooks/hooks/71")
    assert sent_json(stub, 1) == {"company_id": COMPANY,
                                  "hook": {"api_version": "v2", "destination_url": "https://new.example/h"}}
    pc.delete_hook(73)
    assert (stub.received[2]["method"], stub.received[2]["path"]) == ("DELETE", "/rest/v1.0/webhooks/hooks/73")
    assert stub.received[2]["query"]["company_id"] == [str(COMPANY)]


def test_timecard_entry_triggers_are_created_listed_and_deleted(stub: Stub) -> None:
    stub.answer(201, {"id": 501, "resource_name": "Timecard Entries", "event_type": "update"})
    stub.answer(200, [{"id": 501}]).answer(204)
    pc = on_stub(stub)
    assert pc.create_trigger(71, "update", project_id=11)["id"] == 501
    assert stub.received[0]["path"] == "/rest/v1.0/webhooks/hooks/71/triggers"
    assert sent_json(stub, 0) == {"project_id": 11, "api_version": "v2",
                                  "trigger": {"resource_name": "Timecard Entries", "event_type": "update"}}
    assert [t["id"] for t in pc.list_triggers(71, project_id=11)] == [501]
    assert stub.received[1]["query"]["project_id"] == ["11"]
    pc.delete_trigger(71, 501, project_id=11)
    assert (stub.received[2]["method"], stub.received[2]["path"]) == ("DELETE",
                                                                      "/rest/v1.0/webhooks/hooks/71/triggers/501")


def test_a_trigger_for_an_unknown_event_is_refused_before_sending(stub: Stub) -> None:
    with pytest.raises(ValueError, match="create, update, delete"):
        on_stub(stub).create_trigger(71, "approve")
    assert stub.received == []


def test_the_hook_secret_never_reaches_an_error_message(stub: Stub) -> None:
    stub.answer(422, {"errors": {"destination_headers": ["Bearer hook-secret-7f3a9c is not allowed"]}})
    with pytest.raises(ValidationFailed) as info:
        on_stub(stub).create_hook("https://stsync.example/h", HEADERS)
    assert "hook-secret-7f3a9c" not in str(info.value) and "[REDACTED]" in str(info.value)


def test_a_hook_create_whose_answer_is_lost_is_outcome_unknown_and_not_resent(stub: Stub) -> None:
    stub.drop()
    with pytest.raises(OutcomeUnknown):
        on_stub(stub).create_hook("https://stsync.example/h", HEADERS)
    assert len(stub.received) == 1
