"""Skills in the Agent Skills format: create / get / list with search and tags / PUT making
versions (an identical body none) / enable, disable / versions / rollback / delete, import and
byte-identical export, files served as stored, reload from a folder of real skills, the
integrity check after a stored row is altered, and invalid front matter naming its field."""

from __future__ import annotations

import base64
import hashlib

import pytest

from db.events import Event
from db.skills import SkillFile
from hub.core import agent_skills
from tests.assertions import Matches, assert_problem, error_fields

URL = "/api/v1/skills"
SHA256 = Matches("[0-9a-f]{64}")
TIME = Matches(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
CONFIRM = {"X-Confirm": "yes"}

NOTES_MD = """---
name: release-notes
description: Write release notes from merged pull requests. Use when preparing a release.
license: Apache-2.0
compatibility: Needs git.
metadata:
  author: hub-team
  tags: Writing, release
allowed-tools: memory_search notify
---
# Release notes

Group the changes by area; see references/style.md.
"""
STYLE = b"# Style\n\nShort sentences.\n"
LOGO = bytes(range(256))  # not UTF-8: bytes come back as they went in


def skill_md(name="release-notes", description="Write release notes.", extra="", body="Body.\n"):
    return f"---\nname: {name}\ndescription: {description}\n{extra}---\n{body}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def make_skill(client, text=NOTES_MD, files=None) -> dict:
    body = {"skill_md": text, "files": files if files is not None else {}}
    response = client.post(URL, json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def settings(settings, tmp_path):
    return settings.replace(skills_dir=str(tmp_path / "skills"))


def test_create_answers_the_skill_with_location_etag_and_its_hash(client):
    files = {"references/style.md": b64(STYLE), "assets/logo.bin": b64(LOGO)}
    response = client.post(URL, json={"skill_md": NOTES_MD, "files": files})

    assert response.status_code == 201, response.text
    assert response.headers["Location"] == "/api/v1/skills/release-notes"
    assert response.headers["ETag"] == '"1"'
    expected_sha = agent_skills.digest(
        {"SKILL.md": NOTES_MD.encode(), "references/style.md": STYLE, "assets/logo.bin": LOGO}
    )
    assert response.json() == {
        "name": "release-notes",
        "description": "Write release notes from merged pull requests. Use when preparing a "
        "release.",
        "tags": ["writing", "release"],
        "enabled": True,
        "source": "api",
        "version": 1,
        "sha256": expected_sha,
        "created_at": TIME,
        "updated_at": TIME,
        "front_matter": {
            "name": "release-notes",
            "description": "Write release notes from merged pull requests. Use when preparing a "
            "release.",
            "license": "Apache-2.0",
            "compatibility": "Needs git.",
            "metadata": {"author": "hub-team", "tags": "Writing, release"},
            "allowed_tools": ["memory_search", "notify"],
        },
        "body": "# Release notes\n\nGroup the changes by area; see references/style.md.\n",
        "files": [
            {"path": "assets/logo.bin", "size": 256, "sha256": hashlib.sha256(LOGO).hexdigest()},
            {"path": "references/style.md", "size": len(STYLE), "sha256": SHA256},
        ],
    }
    assert client.get(f"{URL}/release-notes").json() == response.json()
    assert [e.type for e in Event.select().where(Event.subject == "release-notes")] == [
        "skill.created"
    ]


def test_files_come_back_byte_identical_and_scripts_are_only_stored(client, tmp_path):
    marker = tmp_path / "ran"
    script = f"#!/bin/sh\ntouch {marker}\n".encode()
    make_skill(client, files={"assets/logo.bin": b64(LOGO), "scripts/run.sh": b64(script)})

    logo = client.get(f"{URL}/release-notes/files", params={"path": "assets/logo.bin"})
    served = client.get(f"{URL}/release-notes/files", params={"path": "scripts/run.sh"})

    assert logo.status_code == 200
    assert logo.headers["content-type"] == "application/octet-stream"
    assert logo.content == LOGO
    assert served.content == script
    assert not marker.exists()  # stored and served, never run
    missing = client.get(f"{URL}/release-notes/files", params={"path": "scripts/none.sh"})
    assert_problem(missing, 404, "skill_file_not_found")


def test_a_taken_name_is_a_conflict(client):
    make_skill(client)
    assert_problem(client.post(URL, json={"skill_md": NOTES_MD}), 409, "skill_exists")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("no front matter\n", "skill"),
        ("---\nname: x\n", "skill"),
        ("---\n- a list\n---\n", "skill"),
        ("---\nname: [unclosed\n---\n", "skill"),
        (skill_md(name="Release-Notes"), "skill.name"),
        (skill_md(name="-notes"), "skill.name"),
        (skill_md(name="notes-"), "skill.name"),
        (skill_md(name="release--notes"), "skill.name"),
        (skill_md(name="a" * 65), "skill.name"),
        (skill_md(name="reload"), "skill.name"),
        ("---\ndescription: d\n---\n", "skill.name"),
        ("---\nname: notes\n---\n", "skill.description"),
        (skill_md(description="'" + "d" * 1025 + "'"), "skill.description"),
        (skill_md(extra=f"compatibility: {'c' * 501}\n"), "skill.compatibility"),
        (skill_md(extra="metadata:\n  version: 1.0\n"), "skill.metadata.version"),
        (skill_md(extra="metadata: just text\n"), "skill.metadata"),
        (skill_md(extra="allowed-tools: {a: b}\n"), "skill.allowed-tools"),
        (skill_md(extra="license: 3\n"), "skill.license"),
    ],
)
def test_invalid_front_matter_is_a_422_naming_the_field(client, text, field):
    response = client.post(URL, json={"skill_md": text})

    assert_problem(response, 422, "invalid_skill")
    assert error_fields(response) == {field}


def test_files_outside_the_three_folders_are_refused_by_path(client):
    files = {
        "../escape.txt": b64(b"x"),
        "notes.txt": b64(b"x"),
        "scripts/./run.sh": b64(b"x"),
        "references/ok.md": "not base64!",
    }
    response = client.post(URL, json={"skill_md": NOTES_MD, "files": files})

    assert_problem(response, 422, "invalid_skill")
    assert error_fields(response) == {"body.files.references/ok.md"}
    del files["references/ok.md"]
    response = client.post(URL, json={"skill_md": NOTES_MD, "files": files})
    assert error_fields(response) == {f"body.files.{path}" for path in files}


def test_put_makes_a_version_and_an_identical_body_makes_none(client):
    make_skill(client)
    changed = NOTES_MD.replace("Group the changes", "Sort the changes")

    second = client.put(
        f"{URL}/release-notes", json={"skill_md": changed}, headers={"If-Match": '"1"'}
    )
    again = client.put(f"{URL}/release-notes", json={"skill_md": changed})

    assert second.status_code == 200, second.text
    assert second.json()["version"] == 2
    assert second.json()["body"].startswith("# Release notes\n\nSort")
    assert second.headers["ETag"] == '"2"'
    assert again.json() == second.json()
    assert again.headers["ETag"] == '"2"'
    versions = client.get(f"{URL}/release-notes/versions").json()
    assert [(v["version"], v["current"], v["source"]) for v in versions["items"]] == [
        (2, True, "api"),
        (1, False, "api"),
    ]
    assert versions["items"][0]["sha256"] == second.json()["sha256"]
    assert versions["items"][1]["sha256"] != second.json()["sha256"]
    stale = client.put(
        f"{URL}/release-notes", json={"skill_md": NOTES_MD}, headers={"If-Match": '"1"'}
    )
    assert_problem(stale, 412, "etag_mismatch")
    kinds = [e.type for e in Event.select().where(Event.subject == "release-notes")]
    assert kinds == ["skill.created", "skill.updated"]


def test_put_must_keep_the_name_and_needs_an_existing_skill(client):
    make_skill(client)
    renamed = client.put(f"{URL}/release-notes", json={"skill_md": skill_md(name="other")})
    assert_problem(renamed, 422, "invalid_skill")
    assert error_fields(renamed) == {"skill.name"}
    missing = client.put(f"{URL}/other", json={"skill_md": skill_md(name="other")})
    assert_problem(missing, 404, "skill_not_found")


def test_search_and_tags_filter_the_list(client):
    make_skill(client)
    make_skill(client, skill_md("sql-style", "How we write SQL.", "metadata:\n  tags: sql\n"))
    make_skill(client, skill_md("code-review", "Review a pull request for bugs."))

    def names(**params):
        return [s["name"] for s in client.get(URL, params=params).json()["items"]]

    assert names() == ["code-review", "release-notes", "sql-style"]
    assert names(q="PULL REQUEST") == ["code-review", "release-notes"]
    assert names(q="sql") == ["sql-style"]
    assert names(tag="release") == ["release-notes"]
    assert names(tag="Writing") == ["release-notes"]
    assert names(tag="rel") == []
    first = client.get(URL, params={"limit": 2}).json()
    second = client.get(URL, params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [s["name"] for s in first["items"] + second["items"]] == names()
    assert second["next_cursor"] is None
    assert set(first["items"][0]) == {
        "name", "description", "tags", "enabled", "source", "version", "sha256",
        "created_at", "updated_at",
    }  # fmt: skip


def test_disable_and_enable(client):
    make_skill(client)

    disabled = client.post(f"{URL}/release-notes/disable")
    twice = client.post(f"{URL}/release-notes/disable")
    enabled = client.post(f"{URL}/release-notes/enable")

    assert disabled.json()["enabled"] is False
    assert twice.headers["ETag"] == disabled.headers["ETag"]
    assert enabled.json()["enabled"] is True
    assert enabled.json()["version"] == 1  # content untouched
    kinds = [e.type for e in Event.select().where(Event.subject == "release-notes")]
    assert kinds == ["skill.created", "skill.disabled", "skill.enabled"]
    assert_problem(client.post(f"{URL}/nothing/enable"), 404, "skill_not_found")


def test_rollback_stores_the_earlier_content_as_a_new_version(client):
    first = make_skill(client, files={"references/style.md": b64(STYLE)})
    client.put(f"{URL}/release-notes", json={"skill_md": NOTES_MD.replace("Group", "Sort")})

    refused = client.post(f"{URL}/release-notes/rollback", json={"version": 1})
    assert_problem(refused, 428, "confirmation_required")
    rolled = client.post(f"{URL}/release-notes/rollback", json={"version": 1}, headers=CONFIRM)

    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["version"] == 3
    assert rolled.json()["sha256"] == first["sha256"]
    assert rolled.json()["body"] == first["body"]
    assert rolled.json()["files"] == first["files"]
    versions = client.get(f"{URL}/release-notes/versions").json()["items"]
    assert [(v["version"], v["source"]) for v in versions] == [
        (3, "rollback"),
        (2, "api"),
        (1, "api"),
    ]
    again = client.post(f"{URL}/release-notes/rollback", json={"version": 1}, headers=CONFIRM)
    assert again.json()["version"] == 3  # already that content: nothing new
    missing = client.post(f"{URL}/release-notes/rollback", json={"version": 9}, headers=CONFIRM)
    assert_problem(missing, 404, "skill_version_not_found")
    old = client.get(f"{URL}/release-notes/export", params={"version": 2})
    assert "Sort the changes" in old.text


def test_delete_removes_every_version(client):
    make_skill(client, files={"references/style.md": b64(STYLE)})
    client.put(f"{URL}/release-notes", json={"skill_md": NOTES_MD.replace("Group", "Sort")})

    assert client.delete(f"{URL}/release-notes").status_code == 204
    assert_problem(client.get(f"{URL}/release-notes"), 404, "skill_not_found")
    assert_problem(client.delete(f"{URL}/release-notes"), 404, "skill_not_found")
    assert SkillFile.select().count() == 0
    assert client.get(f"{URL}/integrity").json() == {"checked": 0, "ok": True, "mismatched": []}
    make_skill(client)  # the name is free again, from version 1
    assert client.get(f"{URL}/release-notes").json()["version"] == 1


def test_import_then_export_is_byte_identical(client):
    text = "---\r\nname: crlf-notes\r\ndescription: Ünïcode and CRLF kept.\r\n---\r\nBody ✓\r\n"

    created = client.post(
        f"{URL}/import", content=text.encode(), headers={"Content-Type": "text/markdown"}
    )
    again = client.post(
        f"{URL}/import", content=text.encode(), headers={"Content-Type": "text/markdown"}
    )

    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "/api/v1/skills/crlf-notes"
    assert created.json()["source"] == "import"
    assert created.json()["body"] == "Body ✓\r\n"
    assert again.status_code == 200
    assert again.json()["version"] == 1  # the same content: no new version
    exported = client.get(f"{URL}/crlf-notes/export")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/markdown")
    assert exported.content == text.encode()


def test_import_as_a_multipart_upload_gives_an_existing_skill_a_version(client):
    make_skill(client)
    changed = NOTES_MD.replace("Group", "Sort").encode()

    response = client.post(f"{URL}/import", files={"file": ("SKILL.md", changed, "text/markdown")})

    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2
    assert response.json()["source"] == "api"  # the skill's origin; the version says import
    versions = client.get(f"{URL}/release-notes/versions").json()["items"]
    assert versions[0]["source"] == "import"
    assert client.get(f"{URL}/release-notes/export").content == changed
    bad = client.post(
        f"{URL}/import", content=b"\xff\xfe", headers={"Content-Type": "text/markdown"}
    )
    assert_problem(bad, 422, "invalid_skill")
    assert error_fields(bad) == {"skill"}


def write_skill(root, folder, text, files=None):
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / "SKILL.md").write_text(text)
    for path, content in (files or {}).items():
        (root / folder / path).parent.mkdir(parents=True, exist_ok=True)
        (root / folder / path).write_bytes(content)


def write_three_skills(root):
    write_skill(
        root,
        "pdf-forms",
        skill_md("pdf-forms", "Fill PDF forms. Use when a user sends a PDF form.", body=(
            "# PDF forms\n\nRead references/fields.md for the field names first.\n"
        )),
        {"references/fields.md": b"# Fields\n\nname, date, signature\n"},
    )  # fmt: skip
    write_skill(
        root,
        "sql-style",
        skill_md("sql-style", "How we write SQL.", "metadata:\n  tags: sql, style\n"),
        {"assets/template.sql": b"SELECT 1;\n", "scripts/lint.sh": b"#!/bin/sh\nexit 0\n"},
    )
    write_skill(root, "triage", skill_md("triage", "Sort incoming issues by urgency."))


def test_reload_reads_a_folder_of_real_skills(client, settings):
    root = __import__("pathlib").Path(settings.skills_dir)
    write_three_skills(root)
    write_skill(root, "misnamed", skill_md("other-name", "The folder says otherwise."))
    (root / "empty").mkdir()
    (root / "README.md").write_text("not a skill folder")

    first = client.post(f"{URL}/reload")

    assert first.status_code == 200, first.text
    report = first.json()
    assert report["created"] == ["pdf-forms", "sql-style", "triage"]
    assert report["updated"] == report["unchanged"] == []
    assert report["invalid"] == [
        {"folder": "empty", "reason": "No SKILL.md in the folder.", "errors": [
            {"field": "skill", "message": "no SKILL.md file"}]},
        {"folder": "misnamed", "reason": "The skill is not valid Agent Skills content.",
         "errors": [{"field": "skill.name", "message": "must equal the folder name 'misnamed'"}]},
    ]  # fmt: skip
    pdf = client.get(f"{URL}/pdf-forms").json()
    assert pdf["source"] == "dir"
    assert pdf["files"] == [{"path": "references/fields.md", "size": 32, "sha256": SHA256}]
    fields = client.get(f"{URL}/pdf-forms/files", params={"path": "references/fields.md"})
    assert fields.content == b"# Fields\n\nname, date, signature\n"
    sql = client.get(f"{URL}/sql-style").json()
    assert [f["path"] for f in sql["files"]] == ["assets/template.sql", "scripts/lint.sh"]

    (root / "triage" / "SKILL.md").write_text(skill_md("triage", "Sort issues by urgency."))
    second = client.post(f"{URL}/reload").json()
    assert (second["created"], second["updated"]) == ([], ["triage"])
    assert second["unchanged"] == ["pdf-forms", "sql-style"]
    assert client.get(f"{URL}/triage").json()["version"] == 2


def test_reload_leaves_a_skill_of_another_source_alone(client, settings):
    root = __import__("pathlib").Path(settings.skills_dir)
    make_skill(client, skill_md("triage", "Made through the API."))
    write_skill(root, "triage", skill_md("triage", "From the folder."))

    report = client.post(f"{URL}/reload").json()

    assert report["created"] == [] and report["invalid"] == [
        {"folder": "triage", "reason": "a skill named 'triage' exists with source 'api'",
         "errors": []}
    ]  # fmt: skip
    assert client.get(f"{URL}/triage").json()["description"] == "Made through the API."


def test_reload_without_a_folder_is_a_conflict(client, settings):
    assert_problem(client.post(f"{URL}/reload"), 409, "skills_dir_missing")


def test_the_integrity_check_finds_a_stored_file_that_changed(client):
    make_skill(client, files={"references/style.md": b64(STYLE)})
    make_skill(client, skill_md("triage", "Sort incoming issues."))
    assert client.get(f"{URL}/integrity").json() == {"checked": 2, "ok": True, "mismatched": []}

    SkillFile.update(content=b"# Style\n\nLong sentences.\n").where(
        SkillFile.path == "references/style.md"
    ).execute()

    skill = client.get(f"{URL}/release-notes").json()
    assert client.get(f"{URL}/integrity").json() == {
        "checked": 2,
        "ok": False,
        "mismatched": [
            {
                "name": "release-notes",
                "version": 1,
                "current": True,
                "sha256": skill["sha256"],
                "actual": SHA256,
                "files": ["references/style.md"],
            }
        ],
    }


def upload(client, data: bytes, filename: str):
    return client.post(
        f"{URL}/import", files={"file": (filename, data, "application/octet-stream")}
    )


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_import_a_skill_folder_as_an_archive(client, kind):
    from hub.core import archives

    text = skill_md("pdf-tools", "Work with PDF files.").encode()
    folder = {
        "pdf-tools/SKILL.md": text,
        "pdf-tools/references/forms.md": b"# Forms\n",
        "pdf-tools/scripts/fill.py": b"print('never run by the hub')\n",
        "pdf-tools/notes.txt": b"not a skill file\n",  # outside the three folders: not kept
    }

    response = upload(client, archives.write_archive(folder, kind), f"pdf-tools.{kind}")

    assert response.status_code == 201, response.text
    assert response.json()["source"] == "import"
    exported = client.get(f"{URL}/pdf-tools/export")
    assert exported.content == text  # byte for byte
    paths = {"path": "references/forms.md"}
    assert client.get(f"{URL}/pdf-tools/files", params=paths).content == b"# Forms\n"
    expected = {"SKILL.md": text, "references/forms.md": b"# Forms\n",
                "scripts/fill.py": b"print('never run by the hub')\n"}  # fmt: skip
    assert response.json()["sha256"] == agent_skills.digest(expected)


def archive_made_by_hand(kind: str, files: dict[str, bytes]) -> bytes:
    """An archive as a person's tools make it: directory entries, real times, default modes."""
    import io
    import tarfile
    import time
    import zipfile

    buffer = io.BytesIO()
    dirs = sorted({p.rsplit("/", 1)[0] for p in files if "/" in p})
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
            for folder in dirs:
                zipped.writestr(folder + "/", b"")
            for path, content in files.items():
                zipped.writestr(path, content)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for folder in dirs:
                info = tarfile.TarInfo(folder)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, time.time()
                tar.addfile(info)
            for path, content in files.items():
                info = tarfile.TarInfo(path)
                info.size, info.mtime, info.uname = len(content), time.time(), "someone"
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


FOLDER = {
    "pdf-tools/SKILL.md": skill_md("pdf-tools", "Work with PDF files.").encode(),
    "pdf-tools/references/forms.md": b"# Forms\n",
    "pdf-tools/assets/logo.bin": bytes(range(256)),
}


def read_back(kind: str, data: bytes) -> dict[str, bytes]:
    from hub.core import archives

    return archives.read_archive(data, kind, max_total=10**6)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_an_imported_folder_exports_as_the_very_archive_uploaded(client, kind):
    uploaded = archive_made_by_hand(kind, FOLDER)
    assert upload(client, uploaded, f"pdf-tools.{kind}").status_code == 201

    exported = client.get(f"{URL}/pdf-tools/export", params={"format": kind})

    assert exported.status_code == 200, exported.text
    assert exported.content == uploaded  # byte for byte
    assert exported.headers["content-type"] == {"tar.gz": "application/gzip",
                                                "zip": "application/zip"}[kind]  # fmt: skip
    assert exported.headers["content-disposition"] == (
        f'attachment; filename="pdf-tools-v1.{kind}"'
    )
    other = "zip" if kind == "tar.gz" else "tar.gz"
    converted = client.get(f"{URL}/pdf-tools/export", params={"format": other})
    assert read_back(other, converted.content) == FOLDER  # the same folder, written by the hub
    again = upload(client, converted.content, f"pdf-tools.{other}")
    assert again.status_code == 200 and again.json()["version"] == 1  # nothing changed


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_an_export_is_deterministic_and_imports_back_unchanged(client, kind):
    files = {"references/style.md": b64(STYLE), "assets/logo.bin": b64(LOGO)}
    skill = make_skill(client, files=files)

    first = client.get(f"{URL}/release-notes/export", params={"format": kind})
    second = client.get(f"{URL}/release-notes/export", params={"format": kind})

    assert first.status_code == 200, first.text
    assert first.content == second.content
    assert read_back(kind, first.content) == {
        "release-notes/SKILL.md": NOTES_MD.encode(),
        "release-notes/assets/logo.bin": LOGO,
        "release-notes/references/style.md": STYLE,
    }
    back = upload(client, first.content, f"release-notes.{kind}")
    assert back.status_code == 200, back.text
    assert (back.json()["version"], back.json()["sha256"]) == (1, skill["sha256"])


def test_an_archive_whose_files_were_not_all_kept_exports_what_was_kept(client):
    uploaded = archive_made_by_hand("zip", {**FOLDER, "pdf-tools/notes.txt": b"dropped\n"})
    assert upload(client, uploaded, "pdf-tools.zip").status_code == 201

    exported = client.get(f"{URL}/pdf-tools/export", params={"format": "zip"})

    assert exported.content != uploaded
    assert read_back("zip", exported.content) == FOLDER


def test_an_older_version_exports_as_it_was(client):
    make_skill(client, skill_md(body="First.\n"))
    client.put(f"{URL}/release-notes", json={"skill_md": skill_md(body="Second.\n"), "files": {}})

    old = client.get(f"{URL}/release-notes/export", params={"format": "zip", "version": 1})

    assert old.headers["content-disposition"] == 'attachment; filename="release-notes-v1.zip"'
    assert read_back("zip", old.content) == {
        "release-notes/SKILL.md": skill_md(body="First.\n").encode()
    }
    bad = client.get(f"{URL}/release-notes/export", params={"format": "rar"})
    assert_problem(bad, 400, "validation_error")
    missing = client.get(f"{URL}/release-notes/export", params={"format": "zip", "version": 9})
    assert_problem(missing, 404, "skill_version_not_found")


def test_an_archive_at_its_root_works_too_and_its_folder_must_match(client):
    from hub.core import archives

    root = {
        "SKILL.md": skill_md("flat-skill", "A flat archive.").encode(),
        "assets/a.svg": b"<svg/>",
    }
    assert upload(client, archives.write_archive(root, "zip"), "s.zip").status_code == 201
    wrong = {"other/SKILL.md": skill_md("named-so", "Folder and name differ.").encode()}
    response = upload(client, archives.write_archive(wrong, "zip"), "s.zip")
    assert_problem(response, 422, "invalid_skill")
    assert "skill.name" in error_fields(response)
    empty = {"readme.md": b"# nothing\n"}
    assert_problem(upload(client, archives.write_archive(empty, "tar.gz"), "s.tar.gz"), 422)


def test_a_hostile_skill_archive_is_refused(client):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("../SKILL.md", skill_md("escape", "Tries to escape."))
    assert_problem(upload(client, buffer.getvalue(), "evil.zip"), 422, "unsafe_archive")
    assert client.get(f"{URL}/escape").status_code == 404
