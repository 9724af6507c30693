"""Plugins: install from a JSON manifest and from real .tar.gz and .zip archives holding
plugin.yaml; what they bring (HTTP tools, tool groups) appears with its provenance and leaves
when the plugin is disabled or uninstalled; upgrade, versions and rollback; conflicts;
hostile archives refused with nothing left behind; the Prometheus gauges."""

from __future__ import annotations

import io
import tarfile
import zipfile

import yaml

from db.events import Event
from hub.core import archives
from tests.assertions import assert_problem
from tests.factories import make_agent

URL = "/api/v1/plugins"
CONFIRM = {"X-Confirm": "yes"}


def manifest(version: str = "1.0.0", **overrides) -> dict:
    body = {
        "name": "acme",
        "version": version,
        "description": "Acme CRM.",
        "tools": [
            {
                "name": "acme-lookup",
                "description": "Look a customer up.",
                "endpoint": "https://crm.example.com/lookup",
                "parameters": {"type": "object", "properties": {"email": {"type": "string"}}},
            }
        ],
        "tool_groups": [{"name": "acme", "tools": ["acme-lookup", "notify"]}],
    }
    body.update(overrides)
    return body


def install(client, body=None):
    response = client.post(URL, json=body or manifest())
    assert response.status_code in (200, 201), response.text
    return response.json()


def upload(client, data: bytes, filename: str):
    return client.post(URL, files={"file": (filename, data, "application/octet-stream")})


def tools(client) -> dict:
    return {
        t["name"]: t for t in client.get("/api/v1/tools", params={"limit": 200}).json()["items"]
    }


def groups(client) -> dict:
    listed = client.get("/api/v1/tool-groups", params={"limit": 200}).json()["items"]
    return {g["name"]: g for g in listed}


def test_install_from_a_manifest_brings_its_tools_and_groups(client):
    response = client.post(URL, json=manifest())

    assert response.status_code == 201, response.text
    plugin = response.json()
    assert plugin["id"] == "acme" and plugin["version"] == "1.0.0" and plugin["enabled"]
    assert plugin["brings"] == {
        "tools": ["acme-lookup"],
        "tool_groups": ["acme"],
        "mcp_servers": [],
        "skills": [],
    }
    assert len(plugin["sha256"]) == 64
    assert response.headers["Location"] == "/api/v1/plugins/acme"
    assert response.headers["ETag"] == '"1"'
    assert tools(client)["acme-lookup"]["source"] == "plugin:acme"
    assert groups(client)["acme"]["source"] == "plugin:acme"
    assert client.get(f"{URL}/acme").json() == plugin
    assert [
        e.type
        for e in Event.select().where((Event.subject == "acme") & Event.type.startswith("plugin."))
    ] == ["plugin.installed"]


def test_install_from_real_archives(client):
    files = {"plugin.yaml": yaml.safe_dump(manifest()).encode(), "README.md": b"# Acme\n"}
    for kind, name in (("tar.gz", "acme.tar.gz"), ("zip", "acme.zip")):
        data = archives.write_archive(files, kind)
        response = upload(client, data, name)
        assert response.status_code == 201, response.text
        assert response.json()["brings"]["tools"] == ["acme-lookup"]
        assert client.delete(f"{URL}/acme").status_code == 204


def test_an_archive_without_a_valid_manifest_is_a_422_naming_it(client):
    missing = archives.write_archive({"other.yaml": b"name: x\n"}, "zip")
    assert_problem(upload(client, missing, "p.zip"), 422, "invalid_manifest")
    bad = manifest(tools=[{"name": "t", "description": "d", "endpoint": "ftp://x"}])
    data = archives.write_archive({"plugin.yaml": yaml.safe_dump(bad).encode()}, "tar.gz")
    response = upload(client, data, "p.tar.gz")
    assert_problem(response, 422, "invalid_manifest")
    assert "plugin.yaml:tools[0].endpoint" in {e["field"] for e in response.json()["errors"]}
    assert client.get(f"{URL}/acme").status_code == 404


def test_hostile_archives_are_refused_and_leave_nothing(client, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("plugin.yaml")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    response = upload(client, buffer.getvalue(), "evil.tar.gz")
    assert_problem(response, 422, "unsafe_archive")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("../plugin.yaml", yaml.safe_dump(manifest()))
    assert_problem(upload(client, buffer.getvalue(), "evil.zip"), 422, "unsafe_archive")
    assert_problem(upload(client, b"just text", "notes.txt"), 422, "not_an_archive")
    assert client.get(URL).json()["items"] == []
    assert "acme-lookup" not in tools(client)


def test_a_plugin_brings_no_credentials(client):
    body = manifest()
    body["tools"][0]["headers"] = {"Authorization": "Bearer secret"}
    assert_problem(client.post(URL, json=body), 400)
    data = archives.write_archive({"plugin.yaml": yaml.safe_dump(body).encode()}, "zip")
    assert_problem(upload(client, data, "p.zip"), 422, "invalid_manifest")


def test_disable_takes_away_what_it_brings_and_enable_puts_it_back(client):
    install(client)
    assert_problem(client.post(f"{URL}/acme/disable"), 428)

    disabled = client.post(f"{URL}/acme/disable", headers=CONFIRM)

    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["enabled"] is False
    assert "acme-lookup" not in tools(client) and "acme" not in groups(client)
    enabled = client.post(f"{URL}/acme/enable")
    assert enabled.json()["enabled"] is True
    assert "acme-lookup" in tools(client) and "acme" in groups(client)
    assert enabled.headers["ETag"] == '"3"'


def test_a_group_an_agent_lists_keeps_the_plugin_enabled(client):
    install(client)
    make_agent(client, id="crm-agent", tools=["group:acme"])

    assert_problem(client.post(f"{URL}/acme/disable", headers=CONFIRM), 409, "tool_group_in_use")
    assert_problem(client.delete(f"{URL}/acme"), 409, "tool_group_in_use")
    assert client.get(f"{URL}/acme").json()["enabled"] is True


def test_names_it_does_not_own_are_a_conflict(client):
    client.post("/api/v1/tool-groups", json={"name": "acme", "tools": ["notify"]})
    assert_problem(client.post(URL, json=manifest()), 409, "plugin_conflict")
    assert client.get(f"{URL}/acme").status_code == 404  # nothing half-installed
    assert "acme-lookup" not in tools(client)
    clash = {"name": "notify", "description": "d", "endpoint": "https://x.example.com"}
    builtin = manifest(tools=[clash], tool_groups=[])
    assert_problem(client.post(URL, json=builtin), 409, "plugin_conflict")


def test_a_group_may_only_name_tools_that_exist(client):
    body = manifest(tool_groups=[{"name": "acme", "tools": ["acme-lookup", "nope"]}])
    response = client.post(URL, json=body)
    assert_problem(response, 422, "unknown_tool")
    assert {e["field"] for e in response.json()["errors"]} == {"tool_groups[0].tools[1]"}


def test_upgrade_versions_and_rollback(client):
    install(client)
    newer = manifest("1.1.0", tools=[], tool_groups=[{"name": "acme", "tools": ["notify"]}])

    upgraded = client.post(URL, json=newer)

    assert upgraded.status_code == 200, upgraded.text
    assert upgraded.json()["version"] == "1.1.0"
    assert "acme-lookup" not in tools(client)
    assert groups(client)["acme"]["tools"] == ["notify"]
    assert_problem(client.post(URL, json=newer), 409, "plugin_version_exists")
    assert_problem(client.post(URL, json=manifest("1.0.1")), 409, "plugin_not_newer")
    versions = client.get(f"{URL}/acme/versions").json()["items"]
    assert [(v["version"], v["current"]) for v in versions] == [("1.1.0", True), ("1.0.0", False)]

    assert_problem(client.post(f"{URL}/acme/rollback", json={"version": "1.0.0"}), 428)
    back = client.post(f"{URL}/acme/rollback", json={"version": "1.0.0"}, headers=CONFIRM)
    assert back.status_code == 200, back.text
    assert back.json()["version"] == "1.0.0"
    assert "acme-lookup" in tools(client)
    missing = client.post(f"{URL}/acme/rollback", json={"version": "9.9.9"}, headers=CONFIRM)
    assert_problem(missing, 404, "plugin_version_not_found")
    types = [
        e.type
        for e in Event.select()
        .where((Event.subject == "acme") & Event.type.startswith("plugin."))
        .order_by(Event.id)
    ]
    assert types == ["plugin.installed", "plugin.upgraded", "plugin.rolled_back"]


def test_uninstall_removes_the_plugin_and_what_it_brings(client):
    install(client)

    assert client.delete(f"{URL}/acme").status_code == 204

    assert_problem(client.get(f"{URL}/acme"), 404, "plugin_not_found")
    assert "acme-lookup" not in tools(client) and "acme" not in groups(client)
    assert_problem(client.get(f"{URL}/acme/versions"), 404, "plugin_not_found")


def test_plugin_gauges(client):
    install(client)
    install(client, manifest(name="other", tools=[], tool_groups=[]))
    client.post(f"{URL}/other/disable", headers=CONFIRM)

    text = client.get("/metrics").text

    assert 'aether_plugins{state="enabled"} 1.0' in text
    assert 'aether_plugins{state="disabled"} 1.0' in text
    assert 'aether_plugin_contributions{kind="tools"} 1.0' in text
    assert 'aether_plugin_contributions{kind="tool_groups"} 1.0' in text


def test_a_plugin_brings_mcp_server_definitions_without_credentials(client):
    body = manifest(mcp_servers=[{"id": "acmefiles", "url": "https://mcp.example.com/mcp"}])

    plugin = install(client, body)

    assert plugin["brings"]["mcp_servers"] == ["acmefiles"]
    server = client.get("/api/v1/mcp-servers/acmefiles").json()
    assert (server["source"], server["has_token"], server["status"]) == (
        "plugin:acme",
        False,
        "new",
    )
    secret = {"id": "acmefiles", "url": "https://mcp.example.com/mcp", "bearer_token": "t"}
    with_token = manifest("2.0.0", mcp_servers=[secret])
    assert_problem(client.post(URL, json=with_token), 400)
    client.post(f"{URL}/acme/disable", headers=CONFIRM)
    assert client.get("/api/v1/mcp-servers/acmefiles").status_code == 404
    client.post(f"{URL}/acme/enable")
    assert client.get("/api/v1/mcp-servers/acmefiles").json()["source"] == "plugin:acme"
    assert 'aether_plugin_contributions{kind="mcp_servers"} 1.0' in client.get("/metrics").text
    assert client.delete(f"{URL}/acme").status_code == 204
    assert client.get("/api/v1/mcp-servers/acmefiles").status_code == 404


def test_an_mcp_server_it_brings_goes_through_the_outbound_policy(client):
    body = manifest(mcp_servers=[{"id": "local", "url": "http://127.0.0.1:9/mcp"}])

    assert_problem(client.post(URL, json=body), 422)
    assert client.get(f"{URL}/acme").status_code == 404
    assert "acme-lookup" not in tools(client)  # nothing half-installed


SKILL = "---\nname: acme-voice\ndescription: Write in Acme's voice.\n---\nBe brief.\n"


def test_a_plugin_brings_skills_inline_and_as_archive_folders(client):
    body = manifest(skills=[{"skill_md": SKILL}])

    plugin = install(client, body)

    assert plugin["brings"]["skills"] == ["acme-voice"]
    skill = client.get("/api/v1/skills/acme-voice").json()
    assert skill["source"] == "plugin:acme"
    client.post(f"{URL}/acme/disable", headers=CONFIRM)
    assert client.get("/api/v1/skills/acme-voice").status_code == 404
    client.post(f"{URL}/acme/enable")
    assert client.get("/api/v1/skills/acme-voice/export").content == SKILL.encode()
    assert client.delete(f"{URL}/acme").status_code == 204

    folder = "---\nname: acme-forms\ndescription: Fill Acme forms.\n---\nSee references.\n"
    files = {
        "plugin.yaml": yaml.safe_dump(manifest(tools=[], tool_groups=[])).encode(),
        "skills/acme-forms/SKILL.md": folder.encode(),
        "skills/acme-forms/references/fields.md": b"# Fields\n",
        "skills/acme-forms/scripts/fill.sh": b"echo never run\n",
    }
    response = upload(client, archives.write_archive(files, "tar.gz"), "acme.tar.gz")
    assert response.status_code == 201, response.text
    assert response.json()["brings"]["skills"] == ["acme-forms"]
    read = client.get("/api/v1/skills/acme-forms/files", params={"path": "references/fields.md"})
    assert read.content == b"# Fields\n"
    text = client.get("/metrics").text
    assert 'aether_plugin_contributions{kind="skills"} 1.0' in text


def test_a_skill_it_brings_must_be_valid_and_its_own(client):
    bad = manifest(skills=[{"skill_md": "---\nname: Bad_Name\ndescription: x\n---\n"}])
    response = client.post(URL, json=bad)
    assert_problem(response, 422, "invalid_skill")
    assert "skills[0].skill.name" in {e["field"] for e in response.json()["errors"]}
    client.post("/api/v1/skills", json={"skill_md": SKILL})
    assert_problem(client.post(URL, json=manifest(skills=[{"skill_md": SKILL}])), 409,
                   "plugin_conflict")  # fmt: skip
    assert client.get(f"{URL}/acme").status_code == 404
