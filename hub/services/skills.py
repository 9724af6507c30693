"""Skills: each write of a skill's content (create, ``PUT``, import, reload, rollback) makes an
immutable version holding ``SKILL.md`` and its files as bytes, with the SHA-256 of their
canonical encoding (``hub.core.agent_skills.digest``); content equal to the current version's
makes none. The skill row points at its current version. Events: ``skill.created``,
``skill.updated`` (a new version), ``skill.enabled``, ``skill.disabled``, ``skill.deleted``."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import peewee

from db import skills as db_skills
from db.base import utcnow, write_transaction
from db.skills import Skill, SkillFile, SkillVersion
from hub.core import agent_skills, archives
from hub.core.agent_skills import Parsed
from hub.core.problems import Conflict, Unprocessable, require
from hub.events import log as events
from hub.services import audit
from hub.services.etags import check_if_match
from hub.settings import current_settings


def parse_body(body: dict) -> Parsed:
    """A JSON body: ``skill_md`` (the text) and ``files`` (path → base64)."""
    files: dict[str, bytes] = {}
    errors = []
    for path, encoded in (body.get("files") or {}).items():
        try:
            files[path] = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            errors.append({"field": f"body.files.{path}", "message": "not base64"})
    if errors:
        raise Unprocessable("Every file must be base64.", code="invalid_skill", errors=errors)
    try:
        return agent_skills.parse(body["skill_md"].encode(), files)
    except Unprocessable as exc:  # file paths are fields of this body
        for error in exc.errors or []:
            if error["field"].startswith("files"):
                error["field"] = "body." + error["field"]
        raise


def create(parsed: Parsed, *, source: str, actor: str | None) -> Skill:
    try:
        with write_transaction():
            skill = _new(parsed, source=source, actor=actor)
            audit.created("skills", skill.name)
    except peewee.IntegrityError:
        raise Conflict(f"A skill named {parsed.name!r} exists.", code="skill_exists") from None
    return skill


def update(name: str, parsed: Parsed, *, actor: str | None, if_match: str | None) -> Skill:
    """A new version of an existing skill, unless the content is what is current."""
    if parsed.name != name:
        raise Unprocessable(
            f"The front matter names {parsed.name!r}, not {name!r}.",
            code="invalid_skill",
            errors=[{"field": "skill.name", "message": f"must equal the skill id {name!r}"}],
        )
    with write_transaction():
        skill = require(db_skills.get(name), "skill", name)
        check_if_match(if_match, skill.etag)
        _next_version(skill, parsed, source="api", actor=actor)
    return skill


def import_(parsed: Parsed, *, actor: str | None) -> tuple[Skill, bool]:
    """Create the skill (source ``import``) or give it a new version; (skill, created)."""
    with write_transaction():
        skill = db_skills.get(parsed.name)
        if skill is None:
            skill = _new(parsed, source="import", actor=actor)
            audit.created("skills", skill.name)
            return skill, True
        _next_version(skill, parsed, source="import", actor=actor)
    return skill, False


def set_enabled(name: str, enabled: bool) -> Skill:
    with write_transaction():
        skill = require(db_skills.get(name), "skill", name)
        if skill.enabled != enabled:
            skill.enabled = enabled
            skill.revision += 1
            skill.updated_at = utcnow()
            skill.save()
            kind = "skill.enabled" if enabled else "skill.disabled"
            events.emit(kind, subject=name, payload={"name": name})
    return skill


def delete(name: str) -> None:
    with write_transaction():
        require(db_skills.get(name), "skill", name)
        ids = [v.id for v in db_skills.versions(name).select(SkillVersion.id)]
        SkillFile.delete().where(SkillFile.version_id.in_(ids)).execute()
        SkillVersion.delete().where(SkillVersion.skill == name).execute()
        Skill.delete().where(Skill.name == name).execute()
        events.emit("skill.deleted", subject=name, payload={"name": name})


def rollback(name: str, number: int, *, actor: str | None) -> Skill:
    """A new version holding version ``number``'s content (history only grows); none when
    that content is the current one."""
    with write_transaction():
        skill = require(db_skills.get(name), "skill", name)
        old = require(db_skills.version(name, number), "skill_version", f"{name} v{number}")
        _next_version(skill, stored(old), source="rollback", actor=actor)
    return skill


def stored(version: SkillVersion) -> Parsed:
    files = {f.path: f.data for f in db_skills.files(version.id)}
    front = version.front_matter
    archive = db_skills.archive_of(version.id)
    tags = agent_skills.tags_of(front)
    return Parsed(front["name"], front, version.body, tags, files, archive)


def export_archive(version: SkillVersion, kind: str) -> bytes:
    """The version's folder as a ``tar.gz`` or ``zip``: the very archive it was imported
    from when that is of ``kind`` and kept whole, else one written deterministically with one
    top folder named after the skill."""
    kept = db_skills.archive_of(version.id)
    if kept is not None and kept[0] == kind:
        return kept[1]
    files = {f"{version.skill}/{f.path}": f.data for f in db_skills.files(version.id)}
    return archives.write_archive(files, kind)


# --- reload ---------------------------------------------------------------------------------


@dataclass
class ReloadReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    invalid: list[dict] = field(default_factory=list)

    def to_api(self) -> dict:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "invalid": self.invalid,
        }


def reload(*, actor: str | None) -> ReloadReport:
    """Read every folder of ``AETHER_SKILLS_DIR`` as a skill (source ``dir``) and store what
    changed; a folder that is not a valid skill, or names a skill from another source, is
    reported invalid and changes nothing. Skills whose folder is gone are left as they are."""
    setting = current_settings().skills_dir
    if not setting:
        raise Conflict("AETHER_SKILLS_DIR is not set.", code="skills_dir_unset")
    root = Path(setting)
    if not root.is_dir():
        raise Conflict(f"AETHER_SKILLS_DIR {setting!r} is not a folder.", code="skills_dir_missing")
    report = ReloadReport()
    read: list[Parsed] = []
    for folder in sorted(root.iterdir(), key=lambda p: p.name):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        try:
            read.append(agent_skills.read_folder(folder))
        except Unprocessable as exc:
            report.invalid.append(_invalid(folder.name, exc.detail, exc.errors or []))
    with write_transaction():
        for parsed in read:
            skill = db_skills.get(parsed.name)
            if skill is None:
                _new(parsed, source="dir", actor=actor)
                report.created.append(parsed.name)
            elif skill.source != "dir":
                reason = f"a skill named {parsed.name!r} exists with source {skill.source!r}"
                report.invalid.append(_invalid(parsed.name, reason, []))
            elif _next_version(skill, parsed, source="dir", actor=actor):
                report.updated.append(parsed.name)
            else:
                report.unchanged.append(parsed.name)
    return report


def _invalid(folder: str, reason: str, errors: list[dict]) -> dict:
    return {"folder": folder, "reason": reason, "errors": errors}


# --- integrity ------------------------------------------------------------------------------


def integrity() -> dict:
    """Every stored version's files hashed again and compared with its recorded SHA-256."""
    checked, mismatched = 0, []
    currents = {s.name: s.current for s in Skill.select(Skill.name, Skill.current)}
    for version in db_skills.all_versions():
        checked += 1
        files = db_skills.files(version.id)
        actual = agent_skills.digest({f.path: f.data for f in files})
        if actual != version.sha256:
            changed = [f.path for f in files if hashlib.sha256(f.data).hexdigest() != f.sha256]
            mismatched.append(
                {
                    "name": version.skill,
                    "version": version.number,
                    "current": currents.get(version.skill) == version.number,
                    "sha256": version.sha256,
                    "actual": actual,
                    "files": changed,
                }
            )
    return {"checked": checked, "ok": not mismatched, "mismatched": mismatched}


# --- the writes themselves ------------------------------------------------------------------


def _new(parsed: Parsed, *, source: str, actor: str | None) -> Skill:
    now = utcnow()
    skill = Skill.create(
        name=parsed.name,
        description=parsed.front_matter["description"],
        tags=parsed.tags,
        enabled=True,
        source=source,
        current=1,
        sha256=parsed.sha256,
        created_at=now,
        updated_at=now,
    )
    _store(parsed, skill.name, 1, source=source, actor=actor)
    events.emit("skill.created", subject=skill.name, payload=_payload(skill))
    return skill


def _next_version(skill: Skill, parsed: Parsed, *, source: str, actor: str | None) -> bool:
    """Store ``parsed`` as the skill's next version; False (nothing written) when it is the
    current content."""
    if parsed.sha256 == skill.sha256:
        return False
    number = (
        SkillVersion.select(peewee.fn.MAX(SkillVersion.number))
        .where(SkillVersion.skill == skill.name)
        .scalar()
    ) + 1
    _store(parsed, skill.name, number, source=source, actor=actor)
    skill.current, skill.sha256 = number, parsed.sha256
    skill.description = parsed.front_matter["description"]
    skill.tags = parsed.tags
    skill.revision += 1
    skill.updated_at = utcnow()
    skill.save()
    events.emit("skill.updated", subject=skill.name, payload=_payload(skill))
    return True


def _store(parsed: Parsed, name: str, number: int, *, source: str, actor: str | None) -> None:
    version = SkillVersion.create(
        skill=name,
        number=number,
        sha256=parsed.sha256,
        front_matter=parsed.front_matter,
        body=parsed.body,
        source=source,
        created_at=utcnow(),
        created_by=actor,
        archive_kind=parsed.archive[0] if parsed.archive else None,
        archive=parsed.archive[1] if parsed.archive else None,
    )
    SkillFile.insert_many(
        [
            {
                "version_id": version.id,
                "path": path,
                "content": content,
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
            }
            for path, content in parsed.files.items()
        ]
    ).execute()


def _payload(skill: Skill) -> dict:
    return {"name": skill.name, "version": skill.current, "sha256": skill.sha256}
