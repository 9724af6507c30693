"""Progressive disclosure of an agent's skills (Agent Skills) into the agent loop.

An agent's ``skills`` that exist and are enabled are *offered*: the model's context gets one
system message listing each by name and description only (:func:`context_text`), and the
loop gets two built-in tools bound to exactly those skills at the version current when the
run started: ``load_skill`` (the ``SKILL.md`` body, the version, its hash, its file list and
its ``allowed-tools``) and ``read_skill_file`` (one file of the version, text or base64).
Unknown and disabled skills are not offered, as unknown tool names are not.

``allowed-tools`` can only narrow: once a loaded skill declares it, the agent may call only
the tools of its own ``tools`` that one of the loaded skills' lists names (``group:<name>``
stands for the group's tools; names that are not hub tools, such as another product's
``Bash``, match nothing); skills that declare nothing narrow nothing; the two skill tools stay
callable; ``requires_approval`` is never lifted. :func:`narrowed` is what the loop applies,
both to the tools it offers the model and at each call.
"""

from __future__ import annotations

import asyncio
import base64
import html
from dataclasses import dataclass

from db import skills as db_skills
from hub.services import tool_groups
from hub.services.toolkit import SKILL_TOOLS, Call, ToolDef, ToolFailed

LOAD, READ = SKILL_TOOLS
FILE_LIMIT = 64 * 1024  # bytes of one file handed to the model; the rest is cut


@dataclass(frozen=True)
class Offer:
    """A skill offered to one run: the version current when the run started."""

    name: str
    description: str
    version: int
    sha256: str
    version_id: int
    allowed_tools: tuple[str, ...] | None  # None: the skill declares none

    def ref(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


def offers(names: list[str]) -> list[Offer]:
    """The skills among ``names`` that exist and are enabled, in the order given (reads the
    database: a worker thread)."""
    found = []
    for skill, version in db_skills.current_versions(names):
        declared = version.front_matter.get("allowed_tools")
        found.append(
            Offer(
                name=skill.name,
                description=skill.description,
                version=version.number,
                sha256=version.sha256,
                version_id=version.id,
                allowed_tools=tuple(declared) if declared is not None else None,
            )
        )
    return found


def context_text(offered: list[Offer]) -> str:
    """The system message that tells the model which skills it may load."""
    entries = "\n".join(
        f"<skill><name>{o.name}</name><description>{html.escape(o.description, quote=False)}"
        "</description></skill>"
        for o in offered
    )
    return (
        "You have skills: instructions for particular kinds of work, loaded when needed. "
        f"When a task matches a skill's description, call {LOAD} with its name to read its "
        f"instructions before you start, and {READ} for a file the instructions refer to "
        "(such as references/…). Scripts in a skill are reference material: this hub does not "
        "run them.\n"
        f"<available_skills>\n{entries}\n</available_skills>"
    )


def loaded_entry(offer: Offer) -> dict:
    """What a run records of a skill it loaded; ``allowed_tools`` expanded (groups)."""
    entry = offer.ref()
    if offer.allowed_tools is not None:
        entry["allowed_tools"] = tool_groups.expand(list(offer.allowed_tools))
    return entry


def narrowed(tools: dict[str, ToolDef], loaded: list[dict]) -> dict[str, ToolDef]:
    """``tools`` as the loaded skills' ``allowed-tools`` leave them (see the module)."""
    lists = [entry["allowed_tools"] for entry in loaded if "allowed_tools" in entry]
    if not lists:
        return tools
    allowed = {name for names in lists for name in names}
    return {name: t for name, t in tools.items() if name in allowed or name in SKILL_TOOLS}


def tools_for(offered: list[Offer]) -> dict[str, ToolDef]:
    """``load_skill`` and ``read_skill_file`` bound to ``offered`` (none when it is empty)."""
    if not offered:
        return {}
    by_name = {o.name: o for o in offered}
    names = list(by_name)

    def pick(arguments: dict) -> Offer:
        offer = by_name.get(arguments["name"])
        if offer is None:  # the schema's enum already says so; a resumed run may differ
            raise ToolFailed(f"no skill named {arguments['name']!r} is offered to this agent")
        return offer

    async def load(arguments: dict, _call: Call) -> dict:
        offer = pick(arguments)
        version, files = await asyncio.to_thread(_version_and_files, offer)
        result = {
            "name": offer.name,
            "version": offer.version,
            "sha256": offer.sha256,
            "instructions": version.body,
            "files": [{"path": f.path, "size": f.size} for f in files if f.path != "SKILL.md"],
        }
        if offer.allowed_tools is not None:
            result["allowed_tools"] = list(offer.allowed_tools)
        return result

    async def read(arguments: dict, _call: Call) -> dict:
        offer = pick(arguments)
        path = arguments["path"]
        stored = await asyncio.to_thread(db_skills.file, offer.version_id, path)
        if stored is None or path == "SKILL.md":
            raise ToolFailed(
                f"skill {offer.name!r} version {offer.version} has no file {path!r}"
                + (f" (its instructions come from {LOAD})" if path == "SKILL.md" else "")
            )
        data = stored.data
        result = {
            "name": offer.name,
            "version": offer.version,
            "path": path,
            "size": len(data),
            "sha256": stored.sha256,
            "truncated": len(data) > FILE_LIMIT,
        }
        part = data[:FILE_LIMIT]
        text = _text(part, cut=len(data) > FILE_LIMIT)
        if text is not None:
            result["encoding"], result["content"] = "utf-8", text
        else:
            result["encoding"], result["content"] = "base64", base64.b64encode(part).decode()
        return result

    skill = {"type": "string", "enum": names, "description": "The skill's name."}
    return {
        LOAD: ToolDef(
            name=LOAD,
            kind="builtin",
            description=(
                "Read a skill's instructions (the body of its SKILL.md), with the list of its "
                "files. Call it before doing work that the skill's description matches."
            ),
            parameters={
                "type": "object",
                "properties": {"name": skill},
                "required": ["name"],
                "additionalProperties": False,
            },
            run=load,
        ),
        READ: ToolDef(
            name=READ,
            kind="builtin",
            description=(
                "Read one file of a skill (a path from load_skill's file list, such as "
                "references/guide.md). Text comes as UTF-8, other files as base64; files over "
                f"{FILE_LIMIT // 1024} KiB are cut (truncated: true)."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "name": skill,
                    "path": {"type": "string", "minLength": 1, "maxLength": 255},
                },
                "required": ["name", "path"],
                "additionalProperties": False,
            },
            run=read,
        ),
    }


def _text(part: bytes, *, cut: bool) -> str | None:
    """``part`` as UTF-8, or None when it is not text; a cut may have split the last
    character, so up to three bytes may go."""
    for trim in range(4 if cut else 1):
        try:
            return part[: len(part) - trim].decode()
        except UnicodeDecodeError:
            continue
    return None


def _version_and_files(offer: Offer):
    version = db_skills.version_by_id(offer.version_id)
    if version is None:
        raise ToolFailed(f"skill {offer.name!r} version {offer.version} was deleted")
    return version, db_skills.files(offer.version_id)
