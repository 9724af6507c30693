"""Skills in the Agent Skills format: CRUD over versions, enable/disable, rollback, reload from
the skills folder, import and export of a SKILL.md, the integrity check, a skill's files."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from db import skills as db_skills
from db.pagination import list_page
from db.skills import Skill, SkillVersion
from hub.core import agent_skills, archives
from hub.core.problems import ValidationFailed, require
from hub.http import context
from hub.services import skills
from hub.settings import current_settings

MARKDOWN = "text/markdown; charset=utf-8"


def _version(skill_id: str, version: int | None) -> SkillVersion:
    skill = require(db_skills.get(skill_id), "skill", skill_id)
    number = version or skill.current
    found = db_skills.version(skill_id, number)
    return require(found, "skill_version", f"{skill_id} v{number}")


def _skill(skill: Skill, status: int = 200, *, created: bool = False):
    current = db_skills.version(skill.name, skill.current)
    headers = {"ETag": skill.etag}
    if created:
        headers["Location"] = f"/api/v1/skills/{skill.name}"
    return skill.to_api(current, db_skills.files(current.id)), status, headers


def list_skills(limit=50, cursor=None, q=None, tag=None):
    """Skills, by name."""
    query = db_skills.listing(q=q, tag=tag)
    return list_page(query, Skill.name, limit=limit, cursor=cursor, view=Skill.summary), 200


def create_skill(body):
    """Create a skill."""
    parsed = skills.parse_body(body)
    return _skill(skills.create(parsed, source="api", actor=context.actor_id()), 201, created=True)


def get_skill(skill_id):
    """One skill."""
    return _skill(require(db_skills.get(skill_id), "skill", skill_id))


def update_skill(skill_id, body):
    """Store a new version of a skill."""
    parsed = skills.parse_body(body)
    if_match = context.header("If-Match")
    return _skill(skills.update(skill_id, parsed, actor=context.actor_id(), if_match=if_match))


def delete_skill(skill_id):
    """Delete a skill and all its versions."""
    skills.delete(skill_id)
    return None, 204


def enable_skill(skill_id):
    """Enable a skill."""
    return _skill(skills.set_enabled(skill_id, True))


def disable_skill(skill_id):
    """Disable a skill."""
    return _skill(skills.set_enabled(skill_id, False))


def list_skill_versions(skill_id, limit=50, cursor=None):
    """A skill's versions, newest first."""
    skill = require(db_skills.get(skill_id), "skill", skill_id)
    return list_page(
        db_skills.versions(skill_id),
        SkillVersion.number,
        limit=limit,
        cursor=cursor,
        descending=True,
        view=lambda version: version.to_api(skill.current),
    ), 200


def rollback_skill(skill_id, body):
    """Make an earlier version's content current again."""
    return _skill(skills.rollback(skill_id, body["version"], actor=context.actor_id()))


def reload_skills():
    """Re-read the skills folder."""
    return skills.reload(actor=context.actor_id()).to_api(), 200


ARCHIVE_MAGIC = (b"\x1f\x8b", b"PK\x03\x04")  # gzip, zip


async def import_skill(body=None, file=None):
    """Import a SKILL.md, or a skill folder as a .tar.gz or .zip."""
    uploaded = await _uploaded(body, file)
    if hasattr(file, "read") and uploaded.startswith(ARCHIVE_MAGIC):
        limits = archives.archive_limits(current_settings())
        name, media = getattr(file, "filename", None), getattr(file, "content_type", None)
        parsed = agent_skills.from_archive(uploaded, name, media, limits)
    else:
        parsed = agent_skills.parse(uploaded)
    skill, created = await run_in_threadpool(skills.import_, parsed, actor=context.actor_id())
    payload, status, headers = await run_in_threadpool(_skill, skill, 201 if created else 200)
    if created:
        headers["Location"] = f"/api/v1/skills/{skill.name}"
    return payload, status, headers


async def _uploaded(body, file) -> bytes:
    """The SKILL.md: the ``text/markdown`` body, or the multipart upload's ``file`` part."""
    if isinstance(body, bytes) and body:
        return body
    if hasattr(file, "read"):
        return await file.read()
    if isinstance(file, str) and file:  # a form field rather than a file: its text
        return file.encode()
    raise ValidationFailed(
        "The body must be a SKILL.md.", errors=[{"field": "body", "message": "is empty"}]
    )


def check_skill_integrity():
    """Check every stored skill version against its SHA-256."""
    return skills.integrity(), 200


ARCHIVE_MEDIA = {"tar.gz": "application/gzip", "zip": "application/zip"}


def export_skill(skill_id, version=None, format="skill_md"):
    """The skill's SKILL.md, or its whole folder as an archive."""
    found = _version(skill_id, version)
    if format == "skill_md":
        skill_md = db_skills.file(found.id, agent_skills.SKILL_MD)
        return Response(skill_md.data, media_type=MARKDOWN)
    data = skills.export_archive(found, format)
    filename = f"{skill_id}-v{found.number}.{format}"
    return Response(
        data,
        media_type=ARCHIVE_MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def get_skill_file(skill_id, path, version=None):
    """One file of a skill."""
    found = db_skills.file(_version(skill_id, version).id, path)
    found = require(found, "skill_file", path)
    return Response(found.data, media_type="application/octet-stream")
