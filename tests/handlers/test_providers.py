"""Behaviour of the providers operations: the built-in provider, providers stored through the
API (keys write-only and encrypted at rest), the test call, roles, the circuit breaker seen
through chat, and one hub used as another hub's upstream.

A real fake OpenAI-compatible upstream (a small Starlette app served by uvicorn on
127.0.0.1) answers the ``openai`` providers; a bound port that does not listen refuses
connections. Runs on SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from db.providers import ProviderConfig
from hub.core.crypto import SecretBox, secret_key
from tests.assertions import PROBLEM_KEYS, assert_problem
from tests.conftest import auth
from tests.factories import make_agent, wait_for
from tests.servers import TOKEN, Processes, hub_env, serve
from tests.servers import refusing_port as closed_port

PROVIDERS = "/api/v1/providers"
SESSIONS = "/api/v1/sessions"
API_KEY = "sk-live-Pz7Q-provider-secret-4411"
OTHER_KEY = "sk-live-Rw2M-second-secret-9078"
CONFIRM = {"X-Confirm": "yes"}
UPSTREAM_REPLY = ["Hello", " from", " upstream"]
UPSTREAM_USAGE = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}

BUILTIN = {
    "id": "builtin",
    "kind": "builtin",
    "source": "builtin",
    "base_url": None,
    "models": ["echo", "scripted"],
    "has_api_key": False,
    "breaker": {"state": "closed", "consecutive_failures": 0, "open_for_seconds": None},
    "version": 1,
}


# --- the fake upstream ---------------------------------------------------------------------


class Upstream:
    """What the fake upstream saw."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.base_url = ""


UPSTREAM = Upstream()


def _sse(payload: dict | str) -> bytes:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()


async def _chat_completions(request: Request) -> Response:
    body = await request.json()
    UPSTREAM.requests.append({"headers": dict(request.headers), "body": body})
    if not body.get("stream"):
        message = {"role": "assistant", "content": "".join(UPSTREAM_REPLY)}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return JSONResponse({"id": "c1", "choices": [choice], "usage": UPSTREAM_USAGE})

    async def parts() -> AsyncIterator[bytes]:
        for piece in UPSTREAM_REPLY:
            yield _sse({"id": "c1", "choices": [{"index": 0, "delta": {"content": piece}}]})
        yield _sse({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        yield _sse({"id": "c1", "choices": [], "usage": UPSTREAM_USAGE})
        yield _sse("[DONE]")

    return StreamingResponse(parts(), media_type="text/event-stream")


FAKE = Starlette(routes=[Route("/v1/chat/completions", _chat_completions, methods=["POST"])])


@pytest.fixture(scope="module")
def upstream_server():
    with serve(FAKE) as port:
        UPSTREAM.base_url = f"http://127.0.0.1:{port}/v1"
        yield UPSTREAM


@pytest.fixture
def upstream(upstream_server) -> Upstream:
    upstream_server.requests.clear()
    return upstream_server


@pytest.fixture
def refusing_port():
    """A port bound but not listening: connections to it are refused."""
    with closed_port() as port:
        yield port


# --- helpers -------------------------------------------------------------------------------


def url(provider_id: str, *rest: str) -> str:
    return "/".join([PROVIDERS, provider_id, *rest])


def listing(client) -> list[dict]:
    response = client.get(PROVIDERS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    return body["items"]


def by_id(client, provider_id: str) -> dict:
    found = [item for item in listing(client) if item["id"] == provider_id]
    assert len(found) == 1, found
    return found[0]


def put(client, provider_id: str, body: dict, status: int = 201, **kw) -> dict:
    response = client.put(url(provider_id), json=body, **kw)
    assert response.status_code == status, response.text
    return response.json()


def expected(provider_id: str, base_url: str, **fields) -> dict:
    """The view of a provider stored through the API, breaker closed."""
    body = {
        "id": provider_id,
        "kind": "openai",
        "source": "api",
        "base_url": base_url,
        "models": [],
        "has_api_key": False,
        "breaker": {"state": "closed", "consecutive_failures": 0, "open_for_seconds": None},
        "version": 1,
    }
    body.update(fields)
    return body


def stored(provider_id: str) -> ProviderConfig:
    config = ProviderConfig.get_or_none(ProviderConfig.id == provider_id)
    assert config is not None, f"no stored provider {provider_id!r}"
    return config


def assert_key_encrypted(config: ProviderConfig, key: str, settings) -> None:
    """The key is in no column as plain text, and the secret box opens it."""
    for column, value in config.__data__.items():
        assert key not in str(value), column
    assert config.api_key_encrypted
    assert SecretBox(secret_key(settings)).decrypt(config.api_key_encrypted) == key


def authorization_seen(upstream: Upstream) -> str | None:
    return upstream.requests[-1]["headers"].get("authorization")


def new_session(client, model: str) -> str:
    agent = make_agent(client, model=model)
    response = client.post(SESSIONS, json={"agent_id": agent["id"]})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def send(client, session_id: str, content: str):
    return client.post(f"{SESSIONS}/{session_id}/messages", json={"content": content})


def assert_provider_problem(response, status: int, code: str, provider: str) -> dict:
    """A provider failure: every required problem member, plus the provider (and, when the
    upstream answered, its status)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    required = PROBLEM_KEYS | {"provider"}
    assert required <= set(body) <= required | {"upstream_status"}, body
    assert (body["status"], body["code"], body["provider"]) == (status, code, provider)
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body


def breaker_gauge(client, provider_id: str) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    prefix = f'aether_provider_breaker_state{{provider="{provider_id}"}} '
    lines = [line for line in response.text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, lines
    return lines[0].removeprefix(prefix)


class Elapsed:
    """Equal to any non-negative number: a measured duration, whose value tests never pin."""

    def __eq__(self, other) -> bool:
        return isinstance(other, int | float) and not isinstance(other, bool) and other >= 0

    def __repr__(self) -> str:
        return "<elapsed>"


ELAPSED = Elapsed()


def sse_payloads(lines: Iterable[str]) -> Iterator[dict]:
    """The JSON ``data:`` of each server-sent event (comments and other fields dropped)."""
    for line in lines:
        if line.startswith("data:"):
            yield json.loads(line.removeprefix("data:").strip())


# --- listing ----------------------------------------------------------------------------------


def test_the_builtin_provider_is_listed_with_its_models_and_a_closed_breaker(client):
    response = client.get(PROVIDERS)
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [BUILTIN], "next_cursor": None}


def test_a_viewer_can_list_providers(client, keyring):
    response = client.get(PROVIDERS, headers=auth(keyring["viewer"]))
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [BUILTIN], "next_cursor": None}


def test_the_list_pages_by_id(client, upstream):
    for name in ("alpha", "beta", "gamma"):
        put(client, name, {"kind": "openai", "base_url": upstream.base_url})

    page_1 = client.get(PROVIDERS, params={"limit": 2}).json()
    page_2 = client.get(PROVIDERS, params={"limit": 2, "cursor": page_1["next_cursor"]}).json()

    assert [p["id"] for p in page_1["items"]] == ["alpha", "beta"]
    assert [p["id"] for p in page_2["items"]] == ["builtin", "gamma"]
    assert page_2["next_cursor"] is None
    assert_problem(client.get(PROVIDERS, params={"cursor": "bm90LW91cnM"}), 400)
    assert_problem(client.get(PROVIDERS, params={"limit": 0}), 400, "validation_error")


def test_one_provider_reads_with_its_etag(client, upstream):
    created = client.put(url("gateway"), json={"kind": "openai", "base_url": upstream.base_url})

    response = client.get(created.headers["location"])

    assert response.status_code == 200, response.text
    assert response.json() == created.json()
    assert response.headers["etag"] == created.headers["etag"] == '"1"'
    assert client.get(url("builtin")).json() == BUILTIN
    assert_problem(client.get(url("nowhere")), 404, "provider_not_found")


def test_listing_needs_an_api_key(anon):
    assert_problem(anon.get(PROVIDERS), 401, "unauthorized")


# --- create and replace ----------------------------------------------------------------------


def test_put_creates_an_openai_provider_without_ever_answering_the_key(client, upstream):
    body = {
        "kind": "openai",
        "base_url": upstream.base_url,
        "api_key": API_KEY,
        "models": ["fake-model", "other-model"],
    }
    response = client.put(url("gateway"), json=body)

    assert response.status_code == 201, response.text
    assert response.headers["location"] == url("gateway")
    assert response.headers["etag"] == '"1"'
    view = expected(
        "gateway", upstream.base_url, models=["fake-model", "other-model"], has_api_key=True
    )
    assert response.json() == view
    assert API_KEY not in response.text
    assert listing(client) == [BUILTIN, view]


def test_the_key_is_stored_encrypted_under_the_generated_secret_key(client, settings, upstream):
    put(client, "gateway", {"kind": "openai", "base_url": upstream.base_url, "api_key": API_KEY})

    config = stored("gateway")
    assert_key_encrypted(config, API_KEY, settings)
    # settings.secret_key is empty in tests: the key was generated in the data folder, 0600
    assert settings.secret_key == ""
    key_file = Path(settings.data_dir) / "secret.key"
    assert key_file.read_text().strip() == secret_key(settings)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # the same text encrypts differently each time: another provider, another token
    put(client, "twin", {"kind": "openai", "base_url": upstream.base_url, "api_key": API_KEY})
    assert stored("twin").api_key_encrypted != config.api_key_encrypted


def test_a_second_put_replaces_and_bumps_the_version(client, upstream):
    first = {"kind": "openai", "base_url": upstream.base_url, "models": ["a"]}
    put(client, "gateway", first)
    second = {
        "kind": "openai",
        "base_url": upstream.base_url + "/",
        "models": ["b", "c"],
        "connect_timeout": 2,
        "read_timeout": 30,
    }

    response = client.put(url("gateway"), json=second)

    assert response.status_code == 200, response.text
    assert "location" not in response.headers
    assert response.headers["etag"] == '"2"'
    view = expected("gateway", upstream.base_url, models=["b", "c"], version=2)
    assert response.json() == view
    assert listing(client) == [BUILTIN, view]
    config = stored("gateway")
    assert (config.version, config.connect_timeout, config.read_timeout) == (2, 2.0, 30.0)


def test_put_with_a_stale_if_match_is_412_and_changes_nothing(client, upstream):
    body = {"kind": "openai", "base_url": upstream.base_url, "models": ["a"]}
    put(client, "gateway", body)
    put(client, "gateway", {**body, "models": ["b"]}, status=200)

    stale = client.put(
        url("gateway"), json={**body, "models": ["stale"]}, headers={"If-Match": '"1"'}
    )

    assert_problem(stale, 412, "etag_mismatch")
    assert by_id(client, "gateway") == expected(
        "gateway", upstream.base_url, models=["b"], version=2
    )
    fresh = put(
        client, "gateway", {**body, "models": ["c"]}, status=200, headers={"If-Match": '"2"'}
    )
    assert fresh == expected("gateway", upstream.base_url, models=["c"], version=3)


def test_put_without_api_key_keeps_the_stored_key_and_null_removes_it(client, settings, upstream):
    body = {"kind": "openai", "base_url": upstream.base_url, "models": ["fake-model"]}
    put(client, "gateway", {**body, "api_key": API_KEY})
    token = stored("gateway").api_key_encrypted

    kept = put(client, "gateway", {**body, "models": ["fake-model", "more"]}, status=200)

    assert kept["has_api_key"] is True
    assert stored("gateway").api_key_encrypted == token
    assert_key_encrypted(stored("gateway"), API_KEY, settings)
    assert client.post(url("gateway", "test")).json()["ok"] is True
    assert authorization_seen(upstream) == f"Bearer {API_KEY}"

    changed = put(client, "gateway", {**body, "api_key": OTHER_KEY}, status=200)

    assert changed["has_api_key"] is True
    assert_key_encrypted(stored("gateway"), OTHER_KEY, settings)
    assert client.post(url("gateway", "test")).json()["ok"] is True
    assert authorization_seen(upstream) == f"Bearer {OTHER_KEY}"

    removed = put(client, "gateway", {**body, "api_key": None}, status=200)

    assert removed == expected(
        "gateway", upstream.base_url, models=["fake-model"], has_api_key=False, version=4
    )
    assert stored("gateway").api_key_encrypted is None
    assert client.post(url("gateway", "test")).json()["ok"] is True
    assert authorization_seen(upstream) is None


def test_the_key_appears_in_no_answer_and_no_audit_entry(client, upstream, refusing_port):
    answers = []
    body = {"kind": "openai", "base_url": upstream.base_url, "api_key": API_KEY, "models": ["m"]}
    answers.append(client.put(url("gateway"), json=body))
    answers.append(client.put(url("gateway"), json=body))
    answers.append(client.get(PROVIDERS))
    answers.append(client.post(url("gateway", "test")))
    answers.append(client.post(url("gateway", "reset")))
    refused = {**body, "base_url": f"http://127.0.0.1:{refusing_port}/v1"}
    answers.append(client.put(url("down"), json=refused))
    answers.append(client.post(url("down", "test")))
    answers.append(client.get(PROVIDERS))
    answers.append(client.get("/api/v1/audit-log", params={"limit": 200}))

    assert [a.status_code for a in answers] == [201, 200, 200, 200, 200, 201, 200, 200, 200]
    assert authorization_seen(upstream) == f"Bearer {API_KEY}"  # the key did go out upstream
    for answer in answers:
        assert API_KEY not in answer.text
        assert all(API_KEY not in value for value in answer.headers.values())
    entries = answers[-1].json()["items"]
    recorded = [(e["operation_id"], e["resource"], e["status"]) for e in entries]
    assert ("put_provider", url("gateway"), 201) in recorded
    assert ("put_provider", url("down"), 201) in recorded


# --- refusals ---------------------------------------------------------------------------------


def test_an_openai_provider_needs_a_base_url(client):
    response = client.put(url("gateway"), json={"kind": "openai", "api_key": API_KEY})

    assert_problem(response, 422, "provider_base_url_required")
    assert listing(client) == [BUILTIN]
    assert ProviderConfig.get_or_none(ProviderConfig.id == "gateway") is None


@pytest.mark.parametrize(
    "body",
    [{"kind": "builtin"}, {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}],
    ids=["builtin-kind", "openai-kind"],
)
def test_the_builtin_provider_cannot_be_replaced(client, body):
    assert_problem(client.put(url("builtin"), json=body), 409, "provider_read_only")
    assert listing(client) == [BUILTIN]


def test_the_builtin_provider_cannot_be_deleted(client):
    response = client.delete(url("builtin"), headers=CONFIRM)
    assert_problem(response, 409, "provider_read_only")
    assert listing(client) == [BUILTIN]


def test_delete_needs_confirmation_then_removes_then_is_404(client, upstream):
    body = {"kind": "openai", "base_url": upstream.base_url, "api_key": API_KEY}
    put(client, "gateway", body)

    assert_problem(client.delete(url("gateway")), 428, "confirmation_required")
    assert [item["id"] for item in listing(client)] == ["builtin", "gateway"]

    response = client.delete(url("gateway"), headers=CONFIRM)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert listing(client) == [BUILTIN]
    assert ProviderConfig.get_or_none(ProviderConfig.id == "gateway") is None

    assert_problem(client.delete(url("gateway"), headers=CONFIRM), 404, "provider_not_found")


def test_an_agent_whose_provider_was_deleted_cannot_chat(client, upstream):
    put(client, "gateway", {"kind": "openai", "base_url": upstream.base_url, "models": ["m"]})
    session_id = new_session(client, "gateway/m")
    assert send(client, session_id, "hello").status_code == 200

    assert client.delete(url("gateway"), headers=CONFIRM).status_code == 204

    assert_problem(send(client, session_id, "again"), 422, "provider_not_configured")


def test_unknown_providers_are_404(client):
    assert_problem(client.post(url("nowhere", "test")), 404, "provider_not_found")
    assert_problem(client.post(url("nowhere", "reset")), 404, "provider_not_found")
    assert_problem(client.delete(url("nowhere"), headers=CONFIRM), 404, "provider_not_found")


def test_an_operator_cannot_put_or_delete(client, keyring, upstream):
    operator = auth(keyring["operator"])
    body = {"kind": "openai", "base_url": upstream.base_url, "api_key": API_KEY}

    assert_problem(client.put(url("gateway"), json=body, headers=operator), 403, "role_too_low")
    assert listing(client) == [BUILTIN]

    put(client, "gateway", body)
    response = client.delete(url("gateway"), headers={**operator, **CONFIRM})
    assert_problem(response, 403, "role_too_low")
    assert [item["id"] for item in listing(client)] == ["builtin", "gateway"]


def test_a_viewer_can_neither_test_nor_reset(client, keyring):
    viewer = auth(keyring["viewer"])
    assert_problem(client.post(url("builtin", "test"), headers=viewer), 403, "role_too_low")
    assert_problem(client.post(url("builtin", "reset"), headers=viewer), 403, "role_too_low")


# --- the test call ----------------------------------------------------------------------------


def test_testing_the_builtin_provider_echoes(client, keyring):
    response = client.post(url("builtin", "test"), headers=auth(keyring["operator"]))

    assert response.status_code == 200, response.text
    assert response.json() == {
        "ok": True,
        "provider": "builtin",
        "model": "echo",
        "latency_ms": ELAPSED,
        "reply": "Echo: Say OK.",
        "error": None,
    }


def test_testing_the_builtin_provider_with_a_named_model(client):
    response = client.post(url("builtin", "test"), params={"model": "scripted"})
    assert response.status_code == 200, response.text
    assert response.json()["reply"] == "Echo: Say OK."
    assert response.json()["model"] == "scripted"


def test_testing_a_reachable_upstream_answers_its_reply(client, upstream):
    models = ["fake-model", "other-model"]
    body = {"kind": "openai", "base_url": upstream.base_url, "api_key": API_KEY, "models": models}
    put(client, "gateway", body)

    response = client.post(url("gateway", "test"))

    assert response.status_code == 200, response.text
    assert response.json() == {
        "ok": True,
        "provider": "gateway",
        "model": "fake-model",
        "latency_ms": ELAPSED,
        "reply": "Hello from upstream",
        "error": None,
    }
    [seen] = upstream.requests
    assert seen["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert seen["body"]["model"] == "fake-model"
    assert seen["body"]["messages"] == [{"role": "user", "content": "Say OK."}]

    other = client.post(url("gateway", "test"), params={"model": "other-model"})
    assert other.json()["model"] == "other-model"
    assert upstream.requests[-1]["body"]["model"] == "other-model"


def test_testing_an_unreachable_upstream_is_ok_false_not_an_error(client, refusing_port):
    base_url = f"http://127.0.0.1:{refusing_port}/v1"
    body = {"kind": "openai", "base_url": base_url, "api_key": API_KEY, "models": ["m"]}
    put(client, "down", body)

    response = client.post(url("down", "test"))

    assert response.status_code == 200, response.text
    answer = response.json()
    error = answer.pop("error")
    assert answer == {
        "ok": False,
        "provider": "down",
        "model": "m",
        "latency_ms": ELAPSED,
        "reply": None,
    }
    assert set(error) >= PROBLEM_KEYS, error
    assert (error["status"], error["code"], error["provider"]) == (502, "provider_error", "down")
    assert error["detail"]
    assert API_KEY not in response.text
    # the test call neither counts against nor is blocked by the breaker
    assert by_id(client, "down")["breaker"] == BUILTIN["breaker"]


def test_testing_a_provider_without_models_needs_one_named(client, upstream):
    put(client, "gateway", {"kind": "openai", "base_url": upstream.base_url})
    assert_problem(client.post(url("gateway", "test")), 422, "model_required")
    named = client.post(url("gateway", "test"), params={"model": "fake-model"})
    assert named.json()["ok"] is True


# --- the circuit breaker ----------------------------------------------------------------------


def test_five_failures_open_the_breaker_and_reset_closes_it(client, keyring, refusing_port):
    base_url = f"http://127.0.0.1:{refusing_port}/v1"
    put(client, "flaky", {"kind": "openai", "base_url": base_url, "models": ["m"]})
    session_id = new_session(client, "flaky/m")
    assert breaker_gauge(client, "flaky") == "0.0"

    for attempt in range(5):
        response = send(client, session_id, f"attempt {attempt}")
        body = assert_provider_problem(response, 502, "provider_error", "flaky")
        assert "upstream_status" not in body  # refused: the upstream never answered

    refused = send(client, session_id, "one more")

    assert_provider_problem(refused, 503, "breaker_open", "flaky")
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    view = by_id(client, "flaky")
    opened_for = view["breaker"].pop("open_for_seconds")
    assert opened_for == ELAPSED
    assert view == expected(
        "flaky",
        base_url,
        models=["m"],
        breaker={"state": "open", "consecutive_failures": 5},
    )
    assert breaker_gauge(client, "flaky") == "2.0"
    assert breaker_gauge(client, "builtin") == "0.0"
    notes = wait_for(
        lambda: client.get("/api/v1/notifications", params={"kind": "breaker_open"}).json(),
        lambda page: page["items"],
    )["items"]
    assert [(n["subject"], n["severity"]) for n in notes] == [("flaky", "critical")]

    response = client.post(url("flaky", "reset"), headers=auth(keyring["operator"]))

    assert response.status_code == 200, response.text
    closed = expected("flaky", base_url, models=["m"])
    assert response.json() == closed
    assert by_id(client, "flaky") == closed
    assert breaker_gauge(client, "flaky") == "0.0"
    # closed again: the next call reaches the (still refusing) upstream instead of 503
    assert_provider_problem(send(client, session_id, "after reset"), 502, "provider_error", "flaky")
    assert by_id(client, "flaky")["breaker"]["consecutive_failures"] == 1


def test_replacing_a_provider_keeps_its_breaker(client, refusing_port):
    base_url = f"http://127.0.0.1:{refusing_port}/v1"
    body = {"kind": "openai", "base_url": base_url, "models": ["m"]}
    put(client, "flaky", body)
    session_id = new_session(client, "flaky/m")
    for attempt in range(5):
        assert send(client, session_id, f"attempt {attempt}").status_code == 502

    replaced = put(client, "flaky", {**body, "models": ["m", "n"]}, status=200)

    assert replaced["breaker"]["state"] == "open"
    assert_provider_problem(send(client, session_id, "again"), 503, "breaker_open", "flaky")


# --- one hub as another hub's upstream -------------------------------------------------------

HUB_TOKEN = TOKEN


@pytest.fixture
def upstream_hub(tmp_path):
    """A second hub in a subprocess (SQLite in its own data folder); yields its URL."""
    data = tmp_path / "upstream-hub"
    hubs = Processes()
    try:
        yield hubs.serve(hub_env(f"sqlite:///{data / 'aether.db'}", data))
    finally:
        hubs.stop_all()


@pytest.mark.slow
def test_a_hub_can_be_another_hubs_upstream(client, upstream_hub):
    view = put(
        client,
        "upstream",
        {
            "kind": "openai",
            "base_url": f"{upstream_hub}/v1",
            "api_key": HUB_TOKEN,
            "models": ["builtin/echo"],
        },
    )
    assert view["has_api_key"] is True
    agent = make_agent(client, model="upstream/builtin/echo", system_prompt="You relay.")
    created = client.post(SESSIONS, json={"agent_id": agent["id"]})
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    content = "Hello across two hubs"

    with client.stream(
        "POST",
        f"{SESSIONS}/{session_id}/messages",
        json={"content": content, "stream": True},
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        payloads = list(sse_payloads(response.iter_lines()))

    kinds = [p["type"] for p in payloads]
    assert (kinds[0], kinds[-1], set(kinds[1:-1])) == ("start", "done", {"token"})
    assert "".join(p["text"] for p in payloads if p["type"] == "token") == f"Echo: {content}"
    done = payloads[-1]
    assert done["finish_reason"] == "stop"
    assert done["message"]["content"] == f"Echo: {content}"
    turn = done["turn"]
    assert (turn["provider"], turn["model"], turn["status"]) == (
        "upstream",
        "builtin/echo",
        "completed",
    )
    stored_turn = client.get(f"/api/v1/turns/{turn['id']}").json()
    assert (stored_turn["provider"], stored_turn["model"]) == ("upstream", "builtin/echo")
    assert stored_turn["usage"] == done["usage"] == turn["usage"]
    usage = turn["usage"]
    assert usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0

    by_model = client.get("/api/v1/usage/models").json()["items"]
    assert by_model == [
        {
            "provider": "upstream",
            "model": "builtin/echo",
            "calls": 1,
            "errors": 0,
            **usage,
            "cost": 0.0,
        }
    ]
    # the upstream hub recorded the same call, on its own builtin echo model
    remote = httpx.get(
        f"{upstream_hub}/api/v1/usage/models", headers=auth(HUB_TOKEN), timeout=10
    ).json()["items"]
    assert remote == [
        {"provider": "builtin", "model": "echo", "calls": 1, "errors": 0, **usage, "cost": 0.0}
    ]

    tested = client.post(url("upstream", "test")).json()
    assert (tested["ok"], tested["model"], tested["reply"]) == (
        True,
        "builtin/echo",
        "Echo: Say OK.",
    )
