"""Behaviour of the usage reports: every LLM call (chat turns, ``/v1`` completions, failed
calls) is counted once with its tokens and cost, and the summary, per-day, per-model,
per-agent and per-session reports add them up over the last ``days`` UTC days.

Every test here runs with a price table for ``builtin/echo`` of one dollar per input token
and two per output token (``AETHER_PRICES`` is USD per million tokens); ``builtin/scripted``
is unpriced. Runs on SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.assertions import assert_problem, error_fields
from tests.conftest import auth
from tests.factories import make_agent

USAGE = "/api/v1/usage"
SESSIONS = "/api/v1/sessions"
PRICES = json.dumps({"builtin/echo": {"input": 1_000_000, "output": 2_000_000}})
ZERO = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@pytest.fixture
def settings(settings):
    """The conftest settings, with the price table (the app is built from these)."""
    return settings.replace(prices=PRICES)


# --- helpers -------------------------------------------------------------------------------


def get(client, path: str, **params) -> dict:
    response = client.get(f"{USAGE}/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def new_session(client, agent_id: str) -> str:
    response = client.post(SESSIONS, json={"agent_id": agent_id})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def send(client, session_id: str, content: str) -> dict:
    """One chat turn; the turn's usage."""
    response = client.post(f"{SESSIONS}/{session_id}/messages", json={"content": content})
    assert response.status_code == 200, response.text
    return response.json()["turn"]["usage"]


def complete(client, model: str, content: str) -> dict:
    """One ``/v1`` chat completion; its usage."""
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()["usage"]


def session_turns(client, session_id: str) -> list[dict]:
    response = client.get(f"{SESSIONS}/{session_id}/turns", params={"limit": 200})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def row(usages: list[dict], *, errors: int = 0, failed: int = 0, price=(1, 2)) -> dict:
    """What a report says about ``usages`` (successful calls) plus ``failed`` calls: the
    calls, errors, token sums and the cost at ``price`` dollars per (input, output) token."""
    prompt = sum(u["prompt_tokens"] for u in usages)
    completion = sum(u["completion_tokens"] for u in usages)
    return {
        "calls": len(usages) + failed,
        "errors": errors,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost": float(prompt * price[0] + completion * price[1]),
    }


def token_counters(client) -> dict[tuple[str, str, str], float]:
    """``aether_llm_tokens_total`` by (provider, model, kind), from /metrics."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "aether_llm_tokens_total":
                labels = sample.labels
                found[(labels["provider"], labels["model"], labels["kind"])] = sample.value
    return found


@pytest.fixture
def activity(client, clock):
    """Chat turns and ``/v1`` completions on 2026-01-01 (the fake clock's day):

    - agent ``echo-agent`` (builtin/echo), session ``chat``: two turns;
    - agent ``script-agent`` (builtin/scripted), session ``failing``: one turn failing 502;
    - ``/v1`` with ``builtin/echo`` (no agent) and with ``echo-agent`` (the agent's call).
    """
    make_agent(client, id="echo-agent", model="builtin/echo")
    make_agent(client, id="script-agent", model="builtin/scripted")
    chat = new_session(client, "echo-agent")
    failing = new_session(client, "script-agent")
    turns = [send(client, chat, "hello there"), send(client, chat, "how are you today?")]
    failed = client.post(f"{SESSIONS}/{failing}/messages", json={"content": "/error 502"})
    assert failed.status_code == 502, failed.text
    plain = complete(client, "builtin/echo", "a plain call")
    as_agent = complete(client, "echo-agent", "a call as the agent")
    return {
        "chat": chat,
        "failing": failing,
        "turns": turns,
        "plain": plain,
        "as_agent": as_agent,
    }


# --- the reports ---------------------------------------------------------------------------


def test_the_summary_counts_calls_errors_tokens_and_cost(client, activity):
    echo = [*activity["turns"], activity["plain"], activity["as_agent"]]

    assert get(client, "summary") == {
        "days": 30,
        "since": "2025-12-03",
        **row(echo, errors=1, failed=1),
    }


def test_the_tokens_add_up_to_the_turns_usage(client, activity):
    turns = session_turns(client, activity["chat"]) + session_turns(client, activity["failing"])
    assert [turn["status"] for turn in turns] == ["completed", "completed", "failed"]
    assert [turn["usage"] for turn in turns[:2]] == activity["turns"]
    assert turns[2]["usage"] == ZERO
    extra = [activity["plain"], activity["as_agent"]]

    summary = get(client, "summary")

    for kind in ("prompt_tokens", "completion_tokens", "total_tokens"):
        expected = sum(t["usage"][kind] for t in turns) + sum(u[kind] for u in extra)
        assert summary[kind] == expected, kind


def test_cost_is_prompt_times_input_plus_completion_times_output_price(client, clock):
    usage = complete(client, "builtin/echo", "what does this cost?")
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0

    summary = get(client, "summary")

    assert summary["cost"] == usage["prompt_tokens"] * 1.0 + usage["completion_tokens"] * 2.0
    assert summary == {"days": 30, "since": "2025-12-03", **row([usage])}


def test_an_unpriced_model_costs_nothing(client, clock):
    usage = complete(client, "builtin/scripted", "/reply free of charge")
    assert usage["completion_tokens"] > 0

    assert get(client, "summary") == {
        "days": 30,
        "since": "2025-12-03",
        **row([usage], price=(0, 0)),
    }


def test_daily_groups_the_calls_by_utc_day(client, clock):
    noon = complete(client, "builtin/echo", "at noon")
    clock.advance(hours=11, minutes=59, seconds=30)  # 2026-01-01 23:59:30
    late = complete(client, "builtin/echo", "just before midnight")
    clock.advance(seconds=40)  # 2026-01-02 00:00:10
    early = complete(client, "builtin/scripted", "/reply just after midnight")

    assert get(client, "daily", days=2) == {
        "days": 2,
        "items": [
            {"day": "2026-01-01", **row([noon, late])},
            {"day": "2026-01-02", **row([early], price=(0, 0))},
        ],
    }


def test_the_days_filter_counts_whole_utc_days_back_from_today(client, clock):
    old = complete(client, "builtin/echo", "three days ago")  # 2026-01-01 12:00
    clock.advance(days=3)  # today is 2026-01-04
    recent = complete(client, "builtin/echo", "today")

    assert get(client, "summary", days=1) == {"days": 1, "since": "2026-01-04", **row([recent])}
    assert get(client, "summary", days=3) == {"days": 3, "since": "2026-01-02", **row([recent])}
    both = row([old, recent])
    assert get(client, "summary", days=4) == {"days": 4, "since": "2026-01-01", **both}
    assert get(client, "summary", days=5) == {"days": 5, "since": "2025-12-31", **both}
    assert get(client, "daily", days=1) == {
        "days": 1,
        "items": [{"day": "2026-01-04", **row([recent])}],
    }
    assert get(client, "daily", days=5) == {
        "days": 5,
        "items": [{"day": "2026-01-01", **row([old])}, {"day": "2026-01-04", **row([recent])}],
    }
    echo_row = {"provider": "builtin", "model": "echo"}
    assert get(client, "models", days=1)["items"] == [{**echo_row, **row([recent])}]
    assert get(client, "models", days=5)["items"] == [{**echo_row, **both}]


def test_the_days_filter_applies_to_agents(client, clock):
    make_agent(client, id="echo-agent", model="builtin/echo")
    old = complete(client, "echo-agent", "three days ago")
    clock.advance(days=3)

    assert get(client, "agents", days=1) == {"days": 1, "items": []}
    assert get(client, "agents", days=5) == {
        "days": 5,
        "items": [{"agent_id": "echo-agent", **row([old])}],
    }


def test_models_groups_by_provider_and_model(client, activity):
    echo = [*activity["turns"], activity["plain"], activity["as_agent"]]

    assert get(client, "models") == {
        "days": 30,
        "items": [
            {"provider": "builtin", "model": "echo", **row(echo)},
            {
                "provider": "builtin",
                "model": "scripted",
                **row([], errors=1, failed=1, price=(0, 0)),
            },
        ],
    }


def test_agents_lists_only_the_calls_made_as_an_agent(client, activity):
    # the plain /v1 call with builtin/echo belongs to no agent
    mine = [*activity["turns"], activity["as_agent"]]

    assert get(client, "agents") == {
        "days": 30,
        "items": [
            {"agent_id": "echo-agent", **row(mine)},
            {"agent_id": "script-agent", **row([], errors=1, failed=1, price=(0, 0))},
        ],
    }


def test_a_sessions_usage_sums_its_calls(client, activity):
    response = client.get(f"{USAGE}/sessions/{activity['chat']}")
    assert response.status_code == 200, response.text
    assert response.json() == {"session_id": activity["chat"], **row(activity["turns"])}

    failing = get(client, f"sessions/{activity['failing']}")
    assert failing == {
        "session_id": activity["failing"],
        **row([], errors=1, failed=1, price=(0, 0)),
    }


def test_a_sessions_usage_counts_calls_of_any_age(client, clock):
    make_agent(client, id="echo-agent", model="builtin/echo")
    session_id = new_session(client, "echo-agent")
    first = send(client, session_id, "long ago")
    clock.advance(days=400)
    second = send(client, session_id, "today")

    assert get(client, f"sessions/{session_id}") == {
        "session_id": session_id,
        **row([first, second]),
    }
    assert get(client, "summary")["calls"] == 1


def test_a_session_without_calls_has_zero_usage(client, clock):
    make_agent(client, id="echo-agent", model="builtin/echo")
    session_id = new_session(client, "echo-agent")
    assert get(client, f"sessions/{session_id}") == {"session_id": session_id, **row([])}


def test_an_unknown_sessions_usage_is_404(client):
    assert_problem(client.get(f"{USAGE}/sessions/ses_unknown"), 404, "session_not_found")


def test_without_calls_every_report_is_empty(client, clock):
    assert get(client, "summary") == {"days": 30, "since": "2025-12-03", **row([])}
    for path in ("daily", "models", "agents"):
        assert get(client, path) == {"days": 30, "items": []}, path


def test_a_provider_test_call_is_counted_but_belongs_to_no_agent(client, clock):
    response = client.post("/api/v1/providers/builtin/test")
    assert response.status_code == 200, response.text

    [echo] = get(client, "models")["items"]
    assert (echo["provider"], echo["model"], echo["calls"], echo["errors"]) == (
        "builtin",
        "echo",
        1,
        0,
    )
    assert echo["completion_tokens"] > 0
    assert get(client, "agents")["items"] == []


def test_a_failed_v1_call_is_counted_as_an_error(client, clock):
    body = {"model": "builtin/scripted", "messages": [{"role": "user", "content": "/error 500"}]}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 502, response.text

    assert get(client, "models")["items"] == [
        {"provider": "builtin", "model": "scripted", **row([], errors=1, failed=1)}
    ]


# --- metrics, validation, roles ------------------------------------------------------------


def test_metrics_count_the_tokens_of_every_call(client, clock):
    before = token_counters(client)
    usage = complete(client, "builtin/echo", "count my tokens")
    turn_usage = send(client, new_session(client, make_agent(client)["id"]), "and mine")

    after = token_counters(client)

    for kind in ("prompt", "completion"):
        key = ("builtin", "echo", kind)
        grown = after[key] - before.get(key, 0.0)
        assert grown == usage[f"{kind}_tokens"] + turn_usage[f"{kind}_tokens"], kind
    response = client.get("/metrics")
    assert "# TYPE aether_llm_tokens_total counter" in response.text


@pytest.mark.parametrize("path", ["summary", "daily", "models", "agents"])
@pytest.mark.parametrize("days", ["0", "367", "-1", "many", "1.5"])
def test_days_out_of_range_or_not_a_number_is_400_naming_it(client, path, days):
    response = client.get(f"{USAGE}/{path}", params={"days": days})
    assert_problem(response, 400, "validation_error")
    assert "query.days" in error_fields(response)


@pytest.mark.parametrize("days", [1, 366])
def test_days_at_the_bounds_is_accepted(client, clock, days):
    assert get(client, "summary", days=days)["days"] == days


@pytest.mark.parametrize("path", ["summary", "daily", "models", "agents", "sessions/ses_unknown"])
def test_a_viewer_can_read_usage_and_anonymous_callers_cannot(client, anon, keyring, path):
    response = client.get(f"{USAGE}/{path}", headers=auth(keyring["viewer"]))
    assert response.status_code == (404 if path.startswith("sessions") else 200), response.text
    assert_problem(anon.get(f"{USAGE}/{path}"), 401, "unauthorized")
