"""Skills in the Agent Skills format: the skill row (what is current), its immutable versions,
and each version's files (``SKILL.md`` among them) as bytes."""

from __future__ import annotations

import peewee

from db.base import BaseModel, JSONField, iso


class Skill(BaseModel):
    """A skill by its ``name``; ``current`` is the number of the version in force.
    ``description``, ``tags`` and ``sha256`` are copied from that version (search, lists);
    ``revision`` rises with every write to the row and is its ETag."""

    name = peewee.CharField(primary_key=True, max_length=64)
    description = peewee.TextField()
    tags = JSONField(default=list)
    enabled = peewee.BooleanField(default=True)
    source = peewee.CharField(max_length=80)  # api, dir, import or plugin:<id>
    current = peewee.IntegerField()
    sha256 = peewee.CharField(max_length=64)
    revision = peewee.IntegerField(default=1)
    created_at = peewee.DateTimeField()
    updated_at = peewee.DateTimeField()

    @property
    def etag(self) -> str:
        return f'"{self.revision}"'

    def summary(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "tags": list(self.tags),
            "enabled": self.enabled,
            "source": self.source,
            "version": self.current,
            "sha256": self.sha256,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }

    def to_api(self, current: SkillVersion, files: list[SkillFile]) -> dict:
        return {
            **self.summary(),
            "front_matter": current.front_matter,
            "body": current.body,
            "files": [file.to_api() for file in files if file.path != "SKILL.md"],
        }


class SkillVersion(BaseModel):
    """One immutable version: its front matter as parsed, the Markdown body, and the SHA-256
    over the canonical encoding of all its files (``hub.core.agent_skills.digest``)."""

    id = peewee.BigAutoField()
    skill = peewee.CharField(max_length=64, index=True)
    number = peewee.IntegerField()
    sha256 = peewee.CharField(max_length=64)
    front_matter = JSONField()
    body = peewee.TextField()
    source = peewee.CharField(max_length=80)
    created_at = peewee.DateTimeField()
    created_by = peewee.CharField(max_length=40, null=True)
    # the archive it was imported from, kept whole when the import kept every file of it
    archive_kind = peewee.CharField(max_length=8, null=True)
    archive = peewee.BlobField(null=True)

    class Meta:
        table_name = "skill_version"
        indexes = ((("skill", "number"), True),)

    def to_api(self, current: int) -> dict:
        return {
            "version": self.number,
            "current": self.number == current,
            "sha256": self.sha256,
            "source": self.source,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
        }


class SkillFile(BaseModel):
    """A file of a version, ``SKILL.md`` included, byte for byte."""

    id = peewee.BigAutoField()
    version_id = peewee.BigIntegerField(index=True)
    path = peewee.CharField(max_length=255)
    content = peewee.BlobField()
    size = peewee.IntegerField()
    sha256 = peewee.CharField(max_length=64)

    class Meta:
        table_name = "skill_file"
        indexes = ((("version_id", "path"), True),)

    @property
    def data(self) -> bytes:
        return bytes(self.content)  # memoryview on some drivers

    def to_api(self) -> dict:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def get(name: str) -> Skill | None:
    return Skill.get_or_none(Skill.name == name)


def listing(*, q: str | None = None, tag: str | None = None) -> peewee.Select:
    query = Skill.select()
    if q:
        needle = q.lower()
        query = query.where(
            peewee.fn.LOWER(Skill.name).contains(needle)
            | peewee.fn.LOWER(Skill.description).contains(needle)
        )
    if tag:  # tags is a JSON array of strings stored as text: match the quoted element
        query = query.where(Skill.tags.cast("TEXT").contains(f'"{tag.lower()}"'))
    return query


def _version_columns() -> list:
    """Every column but the archive's bytes (read on their own: :func:`archive_of`)."""
    return [f for f in SkillVersion._meta.sorted_fields if f.name != "archive"]


def versions(name: str) -> peewee.Select:
    return SkillVersion.select(*_version_columns()).where(SkillVersion.skill == name)


def version(name: str, number: int) -> SkillVersion | None:
    return (
        SkillVersion.select(*_version_columns())
        .where((SkillVersion.skill == name) & (SkillVersion.number == number))
        .first()
    )


def version_by_id(version_id: int) -> SkillVersion | None:
    return SkillVersion.select(*_version_columns()).where(SkillVersion.id == version_id).first()


def archive_of(version_id: int) -> tuple[str, bytes] | None:
    """``(kind, bytes)`` of the archive the version was imported from, when kept."""
    row = (
        SkillVersion.select(SkillVersion.archive_kind, SkillVersion.archive)
        .where(SkillVersion.id == version_id)
        .first()
    )
    if row is None or row.archive_kind is None:
        return None
    return row.archive_kind, bytes(row.archive)


def files(version_id: int) -> list[SkillFile]:
    return list(
        SkillFile.select().where(SkillFile.version_id == version_id).order_by(SkillFile.path)
    )


def file(version_id: int, path: str) -> SkillFile | None:
    return (
        SkillFile.select()
        .where((SkillFile.version_id == version_id) & (SkillFile.path == path))
        .first()
    )


def all_versions() -> peewee.Select:
    return SkillVersion.select(*_version_columns()).order_by(
        SkillVersion.skill, SkillVersion.number
    )


def current_versions(names: list[str]) -> list[tuple[Skill, SkillVersion]]:
    """``(skill, its current version)`` for the skills among ``names`` that exist and are
    enabled, in the order given: one query."""
    if not names:
        return []
    rows = (
        SkillVersion.select(*_version_columns(), Skill)
        .join(
            Skill,
            on=(Skill.name == SkillVersion.skill) & (Skill.current == SkillVersion.number),
            attr="owner",
        )
        .where(Skill.name.in_(names) & Skill.enabled)
    )
    found = {row.owner.name: (row.owner, row) for row in rows}
    return [found[name] for name in names if name in found]
