"""The Agent Skills format (agentskills.io): parse and check a ``SKILL.md``, check the paths of
a skill's files, read a skill folder, and the canonical digest of a skill's content.

A ``SKILL.md`` is YAML front matter between ``---`` lines, then Markdown. Errors name the
field as ``skill.<key>`` (``skill.name``, ``skill.metadata.author`` …); a file as
``files.<path>``. Nothing here runs anything: scripts are bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from hub.core import archives
from hub.core.problems import Unprocessable

SKILL_MD = "SKILL.md"
FOLDERS = ("scripts", "references", "assets")
MAX_FILES = 200
MAX_PATH = 255
NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")  # no leading, trailing or double hyphen
RESERVED = frozenset({"import", "integrity", "reload"})  # paths under /api/v1/skills/
_FENCE = re.compile(r"^---[ \t]*\r?$", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
# allowed-tools is space-separated, but a tool pattern such as ``Bash(git log:*)`` keeps the
# spaces inside its parentheses
_TOOL_TOKEN = re.compile(r"[^\s(]+(?:\([^)]*\))?|\S+")


@dataclass(frozen=True)
class Parsed:
    """A checked skill: its normalised front matter, body, tags and every file's bytes."""

    name: str
    front_matter: dict
    body: str
    tags: list[str]
    files: dict[str, bytes] = field(default_factory=dict)  # SKILL.md included
    # (kind, bytes) of the archive it was imported from, when every file of it was kept:
    # exported in that kind, the version answers those very bytes
    archive: tuple[str, bytes] | None = field(default=None, compare=False, repr=False)

    @property
    def sha256(self) -> str:
        return digest(self.files)


def digest(files: dict[str, bytes]) -> str:
    """SHA-256 over the canonical encoding of a skill's files (``SKILL.md`` included): for
    each file in the order of its path's UTF-8 bytes, the path's length as 8 bytes big-endian,
    the path in UTF-8, the content's length as 8 bytes big-endian, the content."""
    hasher = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.encode()):
        encoded, content = path.encode(), files[path]
        hasher.update(len(encoded).to_bytes(8, "big") + encoded)
        hasher.update(len(content).to_bytes(8, "big") + content)
    return hasher.hexdigest()


def _fail(detail: str, errors: list[dict], code: str = "invalid_skill") -> Unprocessable:
    return Unprocessable(detail, code=code, errors=errors)


def parse(skill_md: bytes, files: dict[str, bytes] | None = None, *, folder: str | None = None):
    """Check ``SKILL.md`` and the files' paths; raise ``Unprocessable`` naming every field at
    fault. ``folder``: the name of the folder it was read from, which ``name`` must equal."""
    try:
        text = skill_md.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail("SKILL.md is not UTF-8.", [_error("skill", "not UTF-8 text")]) from None
    if "\x00" in text:
        raise _fail("SKILL.md holds a NUL character.", [_error("skill", "holds a NUL")])
    front, body = _split(text)
    errors: list[dict] = []
    normal = _front_matter(front, errors)
    name = normal.get("name")
    if folder is not None and isinstance(name, str) and name != folder:
        errors.append(_error("skill.name", f"must equal the folder name {folder!r}"))
    errors.extend(check_paths(files or {}))
    if errors:
        raise _fail("The skill is not valid Agent Skills content.", errors)
    everything = {SKILL_MD: skill_md, **(files or {})}
    return Parsed(name, normal, body, tags_of(normal), everything)


def _error(field_name: str, message: str) -> dict:
    return {"field": field_name, "message": message}


def _split(text: str) -> tuple[dict, str]:
    lines = text.splitlines(keepends=True)
    if not lines or not _FENCE.match(lines[0].rstrip("\n")):
        raise _fail(
            "SKILL.md must start with YAML front matter between '---' lines.",
            [_error("skill", "no front matter: the first line must be '---'")],
        )
    for index in range(1, len(lines)):
        if _FENCE.match(lines[index].rstrip("\n")):
            raw, body = "".join(lines[1:index]), "".join(lines[index + 1 :])
            break
    else:
        raise _fail("SKILL.md's front matter never ends.", [_error("skill", "no closing '---'")])
    try:
        front = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        reason = str(exc).splitlines()[0]
        raise _fail("SKILL.md's front matter is not YAML.", [_error("skill", reason)]) from None
    if not isinstance(front, dict):
        raise _fail(
            "SKILL.md's front matter must be a mapping.", [_error("skill", "not a mapping")]
        )
    return front, body


def _text(front: dict, key: str, errors: list, *, required: bool, limit: int) -> str | None:
    value = front.get(key)
    if value is None:
        if required:
            errors.append(_error(f"skill.{key}", "is required"))
        return None
    if not isinstance(value, str) or not value.strip():
        errors.append(_error(f"skill.{key}", "must be a non-empty string"))
        return None
    if len(value) > limit:
        errors.append(_error(f"skill.{key}", f"must be at most {limit} characters"))
        return None
    return value


def _front_matter(front: dict, errors: list) -> dict:
    """The front matter the hub reads, normalised; keys outside the specification are kept
    in the SKILL.md text and otherwise ignored."""
    out: dict = {}
    name = _text(front, "name", errors, required=True, limit=64)
    if name is not None:
        if not NAME.match(name):
            errors.append(
                _error(
                    "skill.name",
                    "lowercase a-z, 0-9 and single hyphens, neither first nor last",
                )
            )
        elif name in RESERVED:
            errors.append(_error("skill.name", f"{name!r} is reserved by the hub's API"))
        out["name"] = name
    description = _text(front, "description", errors, required=True, limit=1024)
    if description is not None:
        out["description"] = description
    license_ = _text(front, "license", errors, required=False, limit=1024)
    if license_ is not None:
        out["license"] = license_
    compatibility = _text(front, "compatibility", errors, required=False, limit=500)
    if compatibility is not None:
        out["compatibility"] = compatibility
    metadata = front.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            errors.append(_error("skill.metadata", "must be a mapping of strings to strings"))
        else:
            for key, value in metadata.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    errors.append(_error(f"skill.metadata.{key}", "must be a string"))
            out["metadata"] = {str(k): v for k, v in metadata.items() if isinstance(v, str)}
    tools = front.get("allowed-tools")
    if tools is not None:
        if isinstance(tools, str):
            out["allowed_tools"] = _TOOL_TOKEN.findall(tools)
        elif isinstance(tools, list) and all(isinstance(t, str) and t.strip() for t in tools):
            out["allowed_tools"] = [t.strip() for t in tools]
        else:
            errors.append(
                _error("skill.allowed-tools", "a space-separated string or a list of strings")
            )
    return out


def tags_of(front_matter: dict) -> list[str]:
    """A skill's tags: ``metadata.tags``, split on commas and white space, lowercased."""
    raw = front_matter.get("metadata", {}).get("tags", "")
    return list(dict.fromkeys(t.lower() for t in re.split(r"[,\s]+", raw) if t))


def check_paths(files: dict[str, bytes]) -> list[dict]:
    """Errors for paths that are not ``scripts/…``, ``references/…`` or ``assets/…`` relative
    paths without ``.``/``..`` segments, backslashes or control characters."""
    errors = []
    if len(files) > MAX_FILES:
        errors.append(_error("files", f"at most {MAX_FILES} files"))
    for path in files:
        parts = path.split("/")
        if (
            len(path.encode()) > MAX_PATH
            or _CONTROL.search(path)
            or len(parts) < 2
            or parts[0] not in FOLDERS
            or any(part in ("", ".", "..") for part in parts)
        ):
            errors.append(
                _error(
                    f"files.{path}",
                    "must be a relative path under scripts/, references/ or assets/ "
                    f"without '.' or '..' segments, of at most {MAX_PATH} bytes",
                )
            )
    return errors


def read_folder(folder: Path) -> Parsed:
    """A skill folder: ``SKILL.md`` and every regular file under ``scripts/``,
    ``references/`` and ``assets/`` (other files are not part of what the hub stores). A
    symbolic link anywhere is refused, never followed."""
    if folder.is_symlink():
        raise _fail("A skill folder may not be a symbolic link.", [_error("skill", "symlink")])
    skill_md = folder / SKILL_MD
    if not skill_md.is_file() or skill_md.is_symlink():
        raise _fail("No SKILL.md in the folder.", [_error("skill", "no SKILL.md file")])
    files: dict[str, bytes] = {}
    errors = []
    for top in FOLDERS:
        root = folder / top
        if root.is_symlink():
            errors.append(_error(f"files.{top}", "a symbolic link"))
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            for name in sorted(dirnames + filenames):
                path = Path(dirpath) / name
                relative = path.relative_to(folder).as_posix()
                if path.is_symlink():
                    errors.append(_error(f"files.{relative}", "a symbolic link"))
                elif name in filenames:
                    if not path.is_file():
                        errors.append(_error(f"files.{relative}", "not a regular file"))
                    else:
                        files[relative] = path.read_bytes()
    if errors:
        raise _fail("The skill folder holds what the hub does not read.", errors)
    return parse(skill_md.read_bytes(), files, folder=folder.name)


def from_archive(data: bytes, filename: str | None, content_type: str | None, limits: dict):
    """A skill folder uploaded as a ``.tar.gz`` or ``.zip`` (read by :mod:`hub.core.archives`,
    so a hostile archive is refused naming its entry): ``SKILL.md`` at the archive's root, or
    in one top folder named after the skill (``<name>/SKILL.md``, as ``zip -r name.zip name``
    makes); its files under ``scripts/``, ``references/``, ``assets/`` are kept, as reload keeps
    a folder's, and nothing else."""
    kind = archives.archive_kind(filename, content_type, data)
    entries = archives.read_archive(data, kind, **limits)
    folder = None
    if SKILL_MD not in entries:
        tops = {path.split("/", 1)[0] for path in entries}
        if len(tops) == 1 and f"{next(iter(tops))}/{SKILL_MD}" in entries:
            folder = next(iter(tops))
        else:
            raise _fail(
                "The archive holds no SKILL.md at its root or in one top folder.",
                [_error("skill", "no SKILL.md")],
            )
    prefix = f"{folder}/" if folder else ""
    files = {
        path[len(prefix) :]: content
        for path, content in entries.items()
        if path.startswith(prefix) and path[len(prefix) :].split("/", 1)[0] in FOLDERS
    }
    parsed = parse(entries[prefix + SKILL_MD], files, folder=folder)
    if len(files) + 1 == len(entries):  # nothing dropped: the upload is this folder exactly
        parsed = replace(parsed, archive=(kind, data))
    return parsed
