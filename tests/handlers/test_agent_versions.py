"""Agent configuration versions: PATCH makes a new version, promote and rollback switch it."""

from __future__ import annotations

import pytest

from tests.assertions import assert_problem
from tests.factories import make_agent
from tests.handlers.test_agents import (
    NOW,
    all_pages,
    assert_bad_request,
    config_of,
    expected_agent,
    my_key_id,
    url,
    versions,
    with_versions,
)

# --- update ------------------------------------------------------------------------------


def test_patch_of_config_makes_and_activates_a_new_version(client, clock):
    make_agent(client, id="conf", name="Conf", model="builtin/echo", system_prompt="Old.")

    response = client.patch(url("conf"), json={"system_prompt": "New.", "temperature": 0.4})

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert response.json() == expected_agent(
        id="conf",
        name="Conf",
        model="builtin/echo",
        system_prompt="New.",
        temperature=0.4,
        config_version=2,
        version=2,
    )
    assert client.get(url("conf")).json() == response.json()


def test_versions_are_newest_first_with_exactly_one_active(client, clock):
    first = make_agent(client, id="hist", system_prompt="One.")
    second = client.patch(url("hist"), json={"system_prompt": "Two."}).json()
    third = client.patch(url("hist"), json={"system_prompt": "Three."}).json()
    actor = my_key_id(client)

    items = versions(client, "hist")

    assert items == [
        {
            "version": number,
            "active": number == 3,
            "config": config_of(agent),
            "created_at": NOW,
            "created_by": actor,
        }
        for number, agent in ((3, third), (2, second), (1, first))
    ]


def test_versions_page_newest_first(client):
    with_versions(client, "paged")
    make_agent(client, id="other")

    pages = all_pages(client, url("paged", "versions"), limit=2)

    assert [[item["version"] for item in page["items"]] for page in pages] == [[3, 2], [1]]


def test_versions_of_unknown_agent_is_404(client):
    assert_problem(client.get(url("ghost", "versions")), 404, "agent_not_found")


def test_patch_of_status_only_bumps_version_but_not_config_version(client):
    make_agent(client, id="pause-me")

    response = client.patch(url("pause-me"), json={"status": "paused"})

    assert response.status_code == 200, response.text
    agent = response.json()
    assert (agent["status"], agent["version"], agent["config_version"]) == ("paused", 2, 1)
    assert response.headers["etag"] == '"2"'
    assert [item["version"] for item in versions(client, "pause-me")] == [1]


@pytest.mark.parametrize(
    "changes",
    [{}, {"name": "Same"}, {"status": "active", "temperature": None, "tools": []}],
    ids=["empty", "same-name", "same-values"],
)
def test_patch_that_changes_nothing_leaves_the_agent_alone(client, clock, changes):
    before = make_agent(client, id="steady", name="Same")
    clock.advance(minutes=1)

    response = client.patch(url("steady"), json=changes)

    assert response.status_code == 200, response.text
    assert response.json() == before
    assert response.headers["etag"] == '"1"'
    assert client.get(url("steady")).json() == before
    assert len(versions(client, "steady")) == 1


def test_patch_moves_updated_at_but_not_created_at(client, clock):
    make_agent(client, id="timed")
    clock.advance(minutes=5)

    agent = client.patch(url("timed"), json={"name": "Later"}).json()

    assert (agent["created_at"], agent["updated_at"]) == (NOW, "2026-01-01T12:05:00.000Z")


def test_patch_merges_memory_fields(client):
    make_agent(client, id="mind", memory={"enabled": True, "top_k": 3})

    agent = client.patch(url("mind"), json={"memory": {"scopes": ["global"]}}).json()

    assert agent["memory"] == {"enabled": True, "scopes": ["global"], "top_k": 3}
    assert agent["config_version"] == 2


def test_patch_with_the_current_etag_applies(client):
    make_agent(client, id="etag")
    etag = client.get(url("etag")).headers["etag"]

    response = client.patch(url("etag"), json={"name": "Matched"}, headers={"If-Match": etag})

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Matched"
    assert response.headers["etag"] == '"2"'


def test_patch_with_a_weak_form_of_the_current_etag_applies(client):
    make_agent(client, id="weak")

    response = client.patch(url("weak"), json={"name": "Weak"}, headers={"If-Match": 'W/"1"'})

    assert response.status_code == 200, response.text


def test_patch_with_a_stale_etag_is_412_and_changes_nothing(client):
    make_agent(client, id="stale")
    client.patch(url("stale"), json={"name": "Second"})
    before = client.get(url("stale")).json()

    response = client.patch(url("stale"), json={"name": "Lost"}, headers={"If-Match": '"1"'})

    assert_problem(response, 412, "etag_mismatch")
    assert client.get(url("stale")).json() == before


def test_patch_with_star_etag_applies(client):
    make_agent(client, id="star")
    client.patch(url("star"), json={"name": "Second"})

    response = client.patch(url("star"), json={"name": "Any"}, headers={"If-Match": "*"})

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Any"


def test_patch_cannot_change_the_id(client):
    make_agent(client, id="fixed")

    response = client.patch(url("fixed"), json={"id": "moved"})

    assert_bad_request(response, "body.id")
    assert client.get(url("fixed")).status_code == 200


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"temperature": 3}, "body.temperature"),
        ({"model": "nope"}, "body.model"),
        ({"status": "gone"}, "body.status"),
        ({"memory": {"top_k": 51}}, "body.memory.top_k"),
    ],
    ids=["temperature", "model", "status", "memory.top_k"],
)
def test_patch_rejects_bad_values_naming_the_field(client, changes, field):
    before = make_agent(client, id="strict")

    assert_bad_request(client.patch(url("strict"), json=changes), field)
    assert client.get(url("strict")).json() == before


def test_patch_unknown_agent_is_404(client):
    assert_problem(client.patch(url("ghost"), json={"name": "x"}), 404, "agent_not_found")


# --- promote -----------------------------------------------------------------------------


def test_promote_an_older_version_brings_its_config_back(client, clock):
    original = make_agent(client, id="promo", system_prompt="Original.", tools=["calc"])
    client.patch(url("promo"), json={"system_prompt": "Changed.", "tools": []})

    response = client.post(url("promo", "versions", 1, "promote"))

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"3"'
    assert response.json() == {**original, "config_version": 1, "version": 3}
    assert client.get(url("promo")).json() == response.json()


def test_promote_keeps_the_history_and_marks_the_promoted_version_active(client):
    with_versions(client, "promo")

    client.post(url("promo", "versions", 2, "promote"))

    items = versions(client, "promo")
    assert [(item["version"], item["active"]) for item in items] == [
        (3, False),
        (2, True),
        (1, False),
    ]


def test_promote_the_active_version_changes_nothing(client):
    current = with_versions(client, "promo")

    response = client.post(url("promo", "versions", 3, "promote"))

    assert response.status_code == 200, response.text
    assert response.json() == current


def test_promote_an_unknown_version_is_404(client):
    before = make_agent(client, id="promo")

    response = client.post(url("promo", "versions", 7, "promote"))

    assert_problem(response, 404, "agent_version_not_found")
    assert client.get(url("promo")).json() == before


def test_promote_on_an_unknown_agent_is_404(client):
    assert_problem(client.post(url("ghost", "versions", 1, "promote")), 404, "agent_not_found")


@pytest.mark.parametrize("version", ["latest", "1.5", "0", "-1"])
def test_promote_a_version_that_is_not_a_positive_integer_is_400(client, version):
    make_agent(client, id="promo")

    assert_bad_request(client.post(url("promo", "versions", version, "promote")), "path.version")


def test_change_after_promote_makes_the_newest_version(client):
    with_versions(client, "promo")
    client.post(url("promo", "versions", 1, "promote"))

    agent = client.patch(url("promo"), json={"name": "Fourth"}).json()

    assert agent["config_version"] == 4
    assert agent["temperature"] == 0.1


# --- rollback ----------------------------------------------------------------------------


def test_rollback_walks_back_one_version_at_a_time(client):
    with_versions(client, "back")

    first = client.post(url("back", "rollback"))
    second = client.post(url("back", "rollback"))

    assert first.status_code == 200, first.text
    assert (first.json()["config_version"], first.json()["temperature"]) == (2, 0.2)
    assert first.headers["etag"] == f'"{first.json()["version"]}"'
    assert (second.json()["config_version"], second.json()["temperature"]) == (1, 0.1)
    assert second.json()["version"] == first.json()["version"] + 1
    assert [item["active"] for item in versions(client, "back")] == [False, False, True]


def test_rollback_on_the_first_version_is_409(client):
    before = make_agent(client, id="first")

    response = client.post(url("first", "rollback"))

    assert_problem(response, 409, "no_previous_version")
    assert client.get(url("first")).json() == before


def test_rollback_past_the_first_version_is_409(client):
    with_versions(client, "floor")
    client.post(url("floor", "rollback"))
    client.post(url("floor", "rollback"))

    assert_problem(client.post(url("floor", "rollback")), 409, "no_previous_version")


def test_change_after_rollback_makes_the_newest_version(client):
    with_versions(client, "back")
    client.post(url("back", "rollback"))

    agent = client.patch(url("back"), json={"name": "After"}).json()

    assert agent["config_version"] == 4
    assert [item["version"] for item in versions(client, "back")] == [4, 3, 2, 1]


def test_rollback_unknown_agent_is_404(client):
    assert_problem(client.post(url("ghost", "rollback")), 404, "agent_not_found")
