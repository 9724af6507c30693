"""Upload archives: a corpus of hostile ones, each refused naming its entry with nothing
written; good ones of both kinds round-trip byte for byte; extraction is all or nothing."""

from __future__ import annotations

import gzip
import io
import os
import stat
import struct
import tarfile
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from hub.core import archives
from hub.core.archives import (
    ArchiveRefused,
    NotAnArchive,
    archive_kind,
    archive_limits,
    extract_atomically,
    read_archive,
    write_archive,
)
from hub.core.problems import Unprocessable
from hub.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # zip-duplicate

LIMIT = Settings().upload_limit  # AETHER_UPLOAD_LIMIT's default, 10 MiB


# -- building archives, hostile ones included --------------------------------------------------


def member(name: str, data: bytes = b"", type_: bytes = tarfile.REGTYPE, **attrs) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.size = len(data) if type_ in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def tarred(*members: tuple, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(
        fileobj=raw, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return raw.getvalue()


def tgz(*members: tuple, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    return gzip.compress(tarred(*members, fmt=fmt), mtime=0)


def zipped(*entries: tuple[str, bytes] | zipfile.ZipInfo, attrs: dict | None = None) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry in entries:
            if isinstance(entry, zipfile.ZipInfo):
                zf.writestr(entry, b"")
                continue
            name, data = entry
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            for key, value in (attrs or {}).get(name, {}).items():
                setattr(info, key, value)
            zf.writestr(info, data)
    return raw.getvalue()


def zip_entry(name: str, mode: int, system: int = 3) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.create_system = system
    info.external_attr = mode << 16
    return info


def central_records(data: bytes) -> list[int]:
    """Offsets of the central directory's file headers."""
    offsets, at = [], data.find(b"PK\x01\x02")
    while at >= 0:
        offsets.append(at)
        at = data.find(b"PK\x01\x02", at + 4)
    return offsets


def patch(data: bytes, at: int, fmt: str, value: int) -> bytes:
    return data[:at] + struct.pack(fmt, value) + data[at + struct.calcsize(fmt) :]


def zip_lying_size(claimed: int) -> bytes:
    """One entry whose central header claims ``claimed`` bytes; its data is 100 KB."""
    data = zipped(("big.bin", os.urandom(100_000)))
    return patch(data, central_records(data)[0] + 24, "<I", claimed)


def zip_overlapping() -> bytes:
    """Two central entries over one local entry's data (the "overlapping files" bomb)."""
    data = zipped(("a.md", b"x" * 1000), ("b.md", b"y" * 1000))
    return patch(data, central_records(data)[1] + 42, "<I", 0)


def zip_hidden_entry() -> bytes:
    """A local entry ``../evil.sh`` that the central directory leaves out (a reader walking the
    local headers, as streaming unzippers do, would extract it)."""
    data = zipped(("a.md", b"1"), ("../evil.sh", b"#!/bin/sh\n"))
    first, second = central_records(data)
    eocd = data.rfind(b"PK\x05\x06")
    data = data[:second] + data[eocd:]
    eocd = second
    data = patch(data, eocd + 8, "<H", 1)
    data = patch(data, eocd + 10, "<H", 1)
    return patch(data, eocd + 12, "<I", second - first)


def unicode_path(name: bytes) -> bytes:
    """An Info-ZIP Unicode Path extra field (0x7075) naming ``name``."""
    return struct.pack("<HHB", 0x7075, 5 + len(name), 1) + struct.pack("<I", 0) + name


def zip_flagged(data: bytes, bits: int) -> bytes:
    """The first entry's general purpose flags with ``bits`` set, in both of its headers."""
    for offset in (6, central_records(data)[0] + 8):
        (flags,) = struct.unpack_from("<H", data, offset)
        data = patch(data, offset, "<H", flags | bits)
    return data


def zip_raw_name(raw: bytes, utf8_flag: bool) -> bytes:
    """A zip entry whose stored name is exactly ``raw`` (zipfile would not write it)."""
    placeholder = "n" * len(raw)
    data = zipped((placeholder, b"x")).replace(placeholder.encode(), raw)
    return zip_flagged(data, 0x800) if utf8_flag else data


def tgz_global(pax_headers: dict[str, str]) -> bytes:
    """A tar whose global PAX header holds ``pax_headers``, then ``a.md``."""
    raw = io.BytesIO()
    with tarfile.open(
        fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, pax_headers=pax_headers
    ) as tar:
        info, data = member("a.md", b"x")
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def tgz_pax_size_differs() -> bytes:
    """``a.md`` of 512 bytes by its PAX size, 0 by its header's: its data hide a header for
    ``../evil`` that readers ignoring PAX would take for the next member."""
    hidden = tarred(member("../evil", b"x"))[:512]
    body = bytearray(
        tarred(member("a.md", hidden, pax_headers={"size": "512"}), fmt=tarfile.PAX_FORMAT)
    )
    header = 1024  # after the PAX header and its record
    assert body[header : header + 4] == b"a.md"
    body[header + 124 : header + 136] = b"00000000000\0"
    body[header + 148 : header + 156] = b" " * 8
    body[header + 148 : header + 155] = b"%06o\0" % sum(body[header : header + 512])
    return gzip.compress(bytes(body), mtime=0)


def tgz_lying_size() -> bytes:
    """A tar header claiming 1 GB over 10 bytes of data, then the end."""
    info = tarfile.TarInfo("liar.bin")
    info.size = 1_000_000_000
    header = info.tobuf(tarfile.GNU_FORMAT)
    return gzip.compress(header + b"0123456789" + b"\0" * 1024, mtime=0)


def tgz_pax_bomb() -> bytes:
    """A PAX extended header of 50 MB (tarfile reads such a header whole)."""
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 50_000_000
    body = header.tobuf(tarfile.USTAR_FORMAT) + b"0" * 50_000_000
    return gzip.compress(body, mtime=0)


ZEROS = b"\0" * 10_000_000  # 10 MB: under the upload limit, compressed to about 10 KB

HOSTILE: dict[str, tuple[Callable[[], tuple[bytes, str]], str, str]] = {
    # id: (build -> (data, kind), the entry named, a part of the reason)
    "tar-absolute": (
        lambda: (tgz(member("/etc/passwd", b"x")), "tar.gz"),
        "/etc/passwd",
        "absolute",
    ),
    "tar-dotdot": (lambda: (tgz(member("a/../../evil", b"x")), "tar.gz"), "a/../../evil", "'..'"),
    "tar-backslash": (lambda: (tgz(member("..\\evil", b"x")), "tar.gz"), "..\\evil", "backslash"),
    "tar-drive": (lambda: (tgz(member("C:/evil", b"x")), "tar.gz"), "C:/evil", "drive letter"),
    "tar-symlink": (
        lambda: (tgz(member("link", type_=tarfile.SYMTYPE, linkname="/etc/passwd")), "tar.gz"),
        "link",
        "symbolic link",
    ),
    "tar-hardlink": (
        lambda: (
            tgz(member("a.md", b"x"), member("b.md", type_=tarfile.LNKTYPE, linkname="a.md")),
            "tar.gz",
        ),
        "b.md",
        "hard link",
    ),
    "tar-chardev": (
        lambda: (tgz(member("null", type_=tarfile.CHRTYPE, devmajor=1, devminor=3)), "tar.gz"),
        "null",
        "character device",
    ),
    "tar-blockdev": (
        lambda: (tgz(member("sda", type_=tarfile.BLKTYPE, devmajor=8)), "tar.gz"),
        "sda",
        "block device",
    ),
    "tar-fifo": (lambda: (tgz(member("pipe", type_=tarfile.FIFOTYPE)), "tar.gz"), "pipe", "FIFO"),
    "tar-unknown-type": (lambda: (tgz(member("odd", type_=b"Z")), "tar.gz"), "odd", "tar type"),
    "tar-1001": (
        lambda: (tgz(*(member(f"f{i:04}.md") for i in range(1001))), "tar.gz"),
        "f1000.md",
        "more than 1000 entries",
    ),
    "tar-bomb": (lambda: (tgz(member("zeros.bin", ZEROS)), "tar.gz"), "zeros.bin", "bomb"),
    "tar-over-total": (
        lambda: (
            tgz(
                member("big.bin", os.urandom(LIMIT // 2)),
                member("big2.bin", os.urandom(LIMIT // 2 + 1)),
            ),
            "tar.gz",
        ),
        "big2.bin",
        f"more than {LIMIT} bytes",
    ),
    "tar-lying-size": (lambda: (tgz_lying_size(), "tar.gz"), "liar.bin", "truncated"),
    "tar-pax-bomb": (lambda: (tgz_pax_bomb(), "tar.gz"), "", "tar stream unpacks to more"),
    "tar-duplicate": (
        lambda: (tgz(member("a.md", b"1"), member("a.md", b"2")), "tar.gz"),
        "a.md",
        "duplicate",
    ),
    "tar-duplicate-normalised": (
        lambda: (tgz(member("docs/a.md", b"1"), member("./docs//a.md", b"2")), "tar.gz"),
        "./docs//a.md",
        "duplicate",
    ),
    "tar-case": (
        lambda: (tgz(member("A.md", b"1"), member("a.md", b"2")), "tar.gz"),
        "a.md",
        "case-insensitive file system would merge them",
    ),
    "tar-case-folder": (
        lambda: (tgz(member("Docs/a.md", b"1"), member("docs/b.md", b"2")), "tar.gz"),
        "docs/b.md",
        "differ only in case",
    ),
    "tar-unicode-normalisation": (
        lambda: (
            tgz(
                member(unicodedata.normalize("NFC", "caf\u00e9.md"), b"1"),
                member(unicodedata.normalize("NFD", "caf\u00e9.md"), b"2"),
                fmt=tarfile.PAX_FORMAT,
            ),
            "tar.gz",
        ),
        unicodedata.normalize("NFD", "caf\u00e9.md"),
        "Unicode normalisation",
    ),
    "tar-file-and-folder": (
        lambda: (tgz(member("a", b"1"), member("a/b.md", b"2")), "tar.gz"),
        "a/b.md",
        "both a file and a folder",
    ),
    "tar-non-utf8": (
        lambda: (tgz(member(b"caf\xe9.md".decode("utf-8", "surrogateescape"), b"x")), "tar.gz"),
        "caf\\xe9.md",
        "not UTF-8",
    ),
    "tar-control": (lambda: (tgz(member("a\nb.md", b"x")), "tar.gz"), "a\\x0ab.md", "control"),
    "tar-bidi": (
        lambda: (tgz(member("evil\u202egpj.md", b"x"), fmt=tarfile.PAX_FORMAT), "tar.gz"),
        "evil\\u202egpj.md",
        "bidirectional",
    ),
    "tar-truncated-gzip": (
        lambda: ((d := tgz(member("a.md", os.urandom(50_000))))[: len(d) // 2], "tar.gz"),
        "a.md",
        "truncated",
    ),
    "tar-corrupt-gzip": (
        lambda: (b"\x1f\x8b\x08\x00" + os.urandom(2000), "tar.gz"),
        "",
        "corrupt",
    ),
    "tar-bad-crc": (
        lambda: ((d := tgz(member("a.md", b"hello")))[:-8] + b"\0\0\0\0" + d[-4:], "tar.gz"),
        "",
        "corrupt",
    ),
    "tar-padding-bomb": (
        lambda: (
            gzip.compress(tarred(member("a.md", b"x")) + bytes(30_000_000), mtime=0),
            "tar.gz",
        ),
        "",
        "tar stream unpacks to more",
    ),
    "tar-ustar-name-escapes": (
        lambda: (
            tgz(
                member("../../evil", b"x", pax_headers={"path": "safe.md"}), fmt=tarfile.PAX_FORMAT
            ),
            "tar.gz",
        ),
        "safe.md",
        "its header's own name field ('../../evil'",
    ),
    "tar-pax-size-differs": (
        lambda: (tgz_pax_size_differs(), "tar.gz"),
        "a.md",
        "PAX size differs",
    ),
    "tar-global-pax-path": (
        lambda: (tgz_global({"path": "../evil"}), "tar.gz"),
        "../evil",  # tarfile applies it; other readers may not
        "global PAX header sets 'path'",
    ),
    "tar-trailing-garbage": (
        lambda: (tgz(member("a.md", b"hello")) + b"MZ trailing", "tar.gz"),
        "",
        "data after the end",
    ),
    "tar-not-a-tar": (lambda: (gzip.compress(os.urandom(3000)), "tar.gz"), "", "corrupt"),
    "zip-dotdot": (lambda: (zipped(("../../evil.sh", b"x")), "zip"), "../../evil.sh", "'..'"),
    "zip-absolute": (lambda: (zipped(("/etc/cron.d/x", b"x")), "zip"), "/etc/cron.d/x", "absolute"),
    "zip-backslash": (
        lambda: (zipped(("..\\..\\evil.bat", b"x")), "zip"),
        "..\\..\\evil.bat",
        "backslash",
    ),
    "zip-drive": (lambda: (zipped(("C:evil", b"x")), "zip"), "C:evil", "drive letter"),
    "zip-trailing-dot": (lambda: (zipped(("notes.", b"x")), "zip"), "notes.", "ends with a dot"),
    "zip-trailing-space": (lambda: (zipped(("a /b.md", b"x")), "zip"), "a /b.md", "or a space"),
    "zip-windows-device": (
        lambda: (zipped(("docs/Nul.txt", b"x")), "zip"),
        "docs/Nul.txt",
        "device name",
    ),
    "zip-fullwidth-solidus": (
        lambda: (zipped(("..\uff0f..\uff0fevil", b"x")), "zip"),
        "..\uff0f..\uff0fevil",
        "NFKC",
    ),
    "zip-fullwidth-dots": (
        lambda: (zipped(("a/\uff0e\uff0e/evil", b"x")), "zip"),
        "a/\uff0e\uff0e/evil",
        "NFKC",
    ),
    "zip-symlink": (
        lambda: (zipped(zip_entry("link", stat.S_IFLNK | 0o777)), "zip"),
        "link",
        "symbolic link",
    ),
    "zip-symlink-from-dos": (
        lambda: (zipped(zip_entry("link", stat.S_IFLNK | 0o777, system=0)), "zip"),
        "link",
        "symbolic link",
    ),
    "zip-fifo": (lambda: (zipped(zip_entry("pipe", stat.S_IFIFO | 0o644)), "zip"), "pipe", "FIFO"),
    "zip-chardev": (
        lambda: (zipped(zip_entry("tty", stat.S_IFCHR | 0o644)), "zip"),
        "tty",
        "character device",
    ),
    "zip-1001": (
        lambda: (zipped(*((f"f{i:04}.md", b"") for i in range(1001))), "zip"),
        "f1000.md",
        "more than 1000 entries",
    ),
    "zip-bomb": (lambda: (zipped(("zeros.bin", ZEROS)), "zip"), "zeros.bin", "bomb"),
    "zip-lying-size-small": (lambda: (zip_lying_size(10), "zip"), "big.bin", "corrupt"),
    "zip-lying-size-large": (
        lambda: (zip_lying_size(2_000_000_000), "zip"),
        "big.bin",
        "size differs from its header",
    ),
    "zip-overlapping": (lambda: (zip_overlapping(), "zip"), "b.md", "overlap"),
    "zip-hidden-entry": (lambda: (zip_hidden_entry(), "zip"), "a.md", "hidden"),
    "zip-local-name-differs": (
        lambda: (
            zipped(zip_entry("docs/", stat.S_IFDIR | 0o755)).replace(b"docs/", b"../x/", 1),
            "zip",
        ),
        "docs/",
        "local header names another file",
    ),
    "zip-unicode-path-field": (
        lambda: (
            zipped(("safe.md", b"x"), attrs={"safe.md": {"extra": unicode_path(b"../../evil")}}),
            "zip",
        ),
        "safe.md",
        "Unicode Path field names '../../evil'",
    ),
    "zip-duplicate": (lambda: (zipped(("a.md", b"1"), ("a.md", b"2")), "zip"), "a.md", "duplicate"),
    "zip-case": (
        lambda: (zipped(("SKILL.md", b"1"), ("skill.md", b"2")), "zip"),
        "skill.md",
        "case-insensitive",
    ),
    "zip-non-utf8": (
        lambda: (zip_raw_name(b"caf\xe9.md", False), "zip"),
        "caf\\xe9.md",
        "not UTF-8",
    ),
    "zip-non-utf8-flagged": (
        lambda: (zip_raw_name(b"caf\xe9.md", True), "zip"),
        "caf\\xe9.md",
        "not UTF-8",
    ),
    "zip-nul": (lambda: (zip_raw_name(b"a.md\0.sh", False), "zip"), "a.md\\x00.sh", "control"),
    "zip-encrypted": (
        lambda: (zip_flagged(zipped(("secret.md", b"x")), 0x1), "zip"),
        "secret.md",
        "encrypted",
    ),
    "zip-truncated": (
        lambda: ((d := zipped(("a.md", os.urandom(5000))))[: len(d) - 30], "zip"),
        "",
        "corrupt or truncated",
    ),
    "zip-corrupt-data": (
        lambda: ((d := zipped(("a.md", os.urandom(5000))))[:60] + bytes(500) + d[560:], "zip"),
        "a.md",
        "corrupt",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_archive_is_refused_naming_its_entry_and_nothing_is_written(case, tmp_path):
    build, entry, reason = HOSTILE[case]
    data, kind = build()
    assert archive_kind(None, None, data) == kind
    parent = tmp_path / "plugins"
    with pytest.raises(ArchiveRefused) as caught:
        extract_atomically(read_archive(data, kind, **archive_limits(Settings())), parent)
    refused = caught.value
    assert isinstance(refused, Unprocessable)
    assert (refused.status, refused.code) == (422, "unsafe_archive")
    assert refused.entry == entry
    assert reason in refused.reason
    field = f"body.archive:{entry}" if entry else "body.archive"
    assert refused.errors == [{"field": field, "message": refused.reason}]
    assert refused.detail.startswith("Refused ")
    assert os.listdir(tmp_path) == []


def test_the_problem_body_names_the_entry():
    with pytest.raises(ArchiveRefused) as caught:
        read_archive(zipped(("../x", b"")), "zip", max_total=LIMIT)
    body = caught.value.to_dict("req-1")
    assert body == {
        "type": "https://aether-hub.dev/problems/unsafe-archive",
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "Refused archive entry '../x': the path has a '..' component.",
        "code": "unsafe_archive",
        "request_id": "req-1",
        "errors": [{"field": "body.archive:../x", "message": "the path has a '..' component"}],
    }


# -- limits --------------------------------------------------------------------------------------


def test_limits_come_from_the_settings():
    assert archive_limits(Settings(upload_limit=1234)) == {
        "max_entries": 1000,
        "max_total": 1234,
        "max_ratio": 200.0,
    }


@pytest.mark.parametrize("kind", archives.KINDS)
def test_exactly_the_limits_pass(kind):
    files = {f"f{i:04}.md": b"" for i in range(1000)}
    assert read_archive(write_archive(files, kind), kind, max_total=LIMIT) == files
    payload = {"a.bin": os.urandom(5000)}
    data = write_archive(payload, kind)
    assert read_archive(data, kind, max_total=5000) == payload
    with pytest.raises(ArchiveRefused, match="more than 4999 bytes"):
        read_archive(data, kind, max_total=4999)
    with pytest.raises(ArchiveRefused, match="more than 3 entries"):
        read_archive(write_archive({"a": b"", "b": b"", "c": b"", "d": b""}, kind), kind,
                     max_entries=3, max_total=LIMIT)  # fmt: skip


@pytest.mark.parametrize("kind", archives.KINDS)
def test_compressible_files_under_the_ratio_pass(kind):
    # 2 MB of repetitive text (far more than 200:1 would be a bomb) and small files of zeros
    # (any ratio: a small file cannot be a bomb).
    text = b"".join(f"line {i}: the quick brown fox\n".encode() for i in range(70_000))
    files = {"log.txt": text, "zeros.bin": bytes(500_000)}
    assert read_archive(write_archive(files, kind), kind, max_total=LIMIT) == files


@pytest.mark.parametrize("kind", archives.KINDS)
def test_the_overall_ratio_counts_every_entry(kind):
    # Eleven 1 MB files of zeros: each under the per-entry floor, together a bomb.
    files = {f"z{i}.bin": bytes(1_000_000) for i in range(11)}
    data = write_archive(files, kind)
    with pytest.raises(ArchiveRefused, match="times its size"):
        read_archive(data, kind, max_total=LIMIT * 10)


# -- good archives -------------------------------------------------------------------------------

SKILL = {
    "SKILL.md": b"---\nname: pdf-tools\ndescription: Read PDFs.\n---\n# PDF tools\n",
    "references/api.md": "# Référence ✓\n".encode(),
    "scripts/extract.py": b"print('never run by the hub')\n",
    "assets/logo.png": os.urandom(3000),
    "assets/nested.zip": zipped(("../escape", b"x")),  # an archive inside: just a file
    "a/b/c/d/deep.txt": b"",
    "caf\u00e9/\u65e5\u672c.md": b"unicode names",
}


@pytest.mark.parametrize("kind", archives.KINDS)
def test_a_good_archive_round_trips(kind):
    data = write_archive(SKILL, kind)
    assert read_archive(data, kind, max_total=LIMIT) == SKILL
    assert archive_kind(f"pdf-tools.{'tgz' if kind == 'tar.gz' else 'zip'}", None, data) == kind


@pytest.mark.parametrize("kind", archives.KINDS)
def test_writing_is_deterministic(kind):
    first = write_archive(SKILL, kind)
    again = write_archive(dict(reversed(list(SKILL.items()))), kind)
    assert first == again
    assert write_archive(read_archive(first, kind, max_total=LIMIT), kind) == first


def test_written_archives_hold_no_owner_time_or_name():
    data = write_archive(SKILL, "tar.gz")
    assert data[3] == 0 and data[4:8] == b"\0\0\0\0"  # gzip: no FNAME flag, mtime 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(SKILL)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode, m.type) for m in members} == {
        (0, 0, 0, "", "", 0o644, tarfile.REGTYPE)
    }
    with zipfile.ZipFile(io.BytesIO(write_archive(SKILL, "zip"))) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(SKILL)
    assert {(i.date_time, i.external_attr >> 16, i.compress_type) for i in infos} == {
        ((1980, 1, 1, 0, 0, 0), stat.S_IFREG | 0o644, zipfile.ZIP_DEFLATED)
    }


def test_archives_from_common_tools_are_read():
    # `tar czf x.tgz -C dir .` style: a "./" root, "./" prefixes, folder entries; a zip with
    # folder entries as Info-ZIP writes them.
    data = tgz(
        member("./", type_=tarfile.DIRTYPE),
        member("./docs", type_=tarfile.DIRTYPE),
        member("./docs/a.md", b"A"),
        member("./SKILL.md", b"S", type_=tarfile.AREGTYPE),
        member("./empty", type_=tarfile.DIRTYPE),
        fmt=tarfile.PAX_FORMAT,
    )
    assert read_archive(data, "tar.gz", max_total=LIMIT) == {"docs/a.md": b"A", "SKILL.md": b"S"}
    data = zipped(zip_entry("docs/", stat.S_IFDIR | 0o755), ("docs/a.md", b"A"), ("SKILL.md", b"S"))
    assert read_archive(data, "zip", max_total=LIMIT) == {"docs/a.md": b"A", "SKILL.md": b"S"}
    # long and non-ASCII names (PAX path records, GNU long names), a global PAX comment as
    # git archive writes it
    long = "references/" + "very-long-folder-name-" * 6 + "/" + "é" * 60 + ".md"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        assert read_archive(tgz(member(long, b"L"), fmt=fmt), "tar.gz", max_total=LIMIT) == {
            long: b"L"
        }
    data = tgz_global({"comment": "6644f0e"})
    assert read_archive(data, "tar.gz", max_total=LIMIT) == {"a.md": b"x"}
    # a multi-member gzip (concatenated streams) is one stream
    body = tarred(member("x.md", b"xyz"))
    data = gzip.compress(body[:700], mtime=0) + gzip.compress(body[700:], mtime=0)
    assert read_archive(data, "tar.gz", max_total=LIMIT) == {"x.md": b"xyz"}

    # a zip written to a pipe: sizes and CRCs in data descriptors after each entry's data
    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.chunks: list[bytes] = []

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            self.chunks.append(bytes(b))
            return len(b)

    pipe = Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in SKILL.items():
            with zf.open(name, "w") as out:
                out.write(content)
    data = b"".join(pipe.chunks)
    assert zipfile.ZipFile(io.BytesIO(data)).infolist()[0].flag_bits & 0x08
    assert read_archive(data, "zip", max_total=LIMIT) == SKILL


@pytest.mark.parametrize("kind", archives.KINDS)
def test_an_empty_archive_is_no_files(kind):
    assert read_archive(write_archive({}, kind), kind, max_total=LIMIT) == {}


@pytest.mark.parametrize("bad", ["../x", "/x", "a/./b", "a//b", "A", "C:x", ""])
def test_write_refuses_what_read_would_refuse(bad):
    files = {"a": b""} if bad == "A" else {}
    files[bad] = b""
    with pytest.raises(ArchiveRefused):
        write_archive(files, "zip")


# -- the kind ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type", "kind"),
    [
        (None, None, "tar.gz"),
        ("skill.tar.gz", "application/gzip", "tar.gz"),
        ("SKILL.TGZ", "application/octet-stream", "tar.gz"),
        ("upload", "application/x-gzip; charset=binary", "tar.gz"),
        (None, None, "zip"),
        ("plugin.zip", "application/zip", "zip"),
        ("plugin.bin", "application/x-zip-compressed", "zip"),
    ],
)
def test_the_kind_is_decided_from_bytes_name_and_type(filename, content_type, kind):
    data = write_archive({"a": b"1"}, kind)
    assert archive_kind(filename, content_type, data) == kind


@pytest.mark.parametrize(
    ("filename", "content_type", "data", "reason"),
    [
        ("SKILL.md", "text/markdown", b"---\nname: x\n", "neither"),
        (None, None, b"", "neither"),
        (None, None, b"Rar!\x1a\x07\x00", "neither"),
        ("x.zip", None, write_archive({"a": b""}, "tar.gz"), "file name says zip"),
        ("x.tgz", None, write_archive({"a": b""}, "zip"), "file name says tar.gz"),
        (None, "application/zip", write_archive({"a": b""}, "tar.gz"), "media type says zip"),
        ("x.tar", None, write_archive({"a": b""}, "tar.gz"), "not .tar.gz or .zip"),
        (None, "text/plain", write_archive({"a": b""}, "zip"), "media type 'text/plain'"),
    ],
)
def test_what_is_neither_is_refused(filename, content_type, data, reason):
    with pytest.raises(NotAnArchive) as caught:
        archive_kind(filename, content_type, data)
    assert caught.value.code == "not_an_archive" and caught.value.status == 422
    assert reason in caught.value.reason


def test_an_unknown_kind_is_refused():
    with pytest.raises(NotAnArchive):
        read_archive(b"", "rar", max_total=LIMIT)
    with pytest.raises(NotAnArchive):
        write_archive({}, "tar")


# -- extraction ----------------------------------------------------------------------------------


def tree(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }


def test_extraction_writes_every_file_into_a_fresh_private_folder(tmp_path):
    parent = tmp_path / "data" / "plugins"
    first = extract_atomically(SKILL, parent)
    second = extract_atomically(SKILL, parent)
    assert first != second and first.parent == second.parent == parent
    assert sorted(os.listdir(parent)) == sorted([first.name, second.name])  # no .tmp- left
    assert tree(first) == SKILL
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(first.stat().st_mode) == 0o700
    assert stat.S_IMODE((first / "SKILL.md").stat().st_mode) == 0o600
    assert stat.S_IMODE((first / "a" / "b").stat().st_mode) == 0o700


def test_a_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    parent = tmp_path / "plugins"
    parent.mkdir()
    (parent / "installed").mkdir()  # what was there before stays
    written = []
    real_fsync = os.fsync

    def failing_fsync(fd):
        written.append(fd)
        if len(written) == 4:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(archives.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        extract_atomically(SKILL, parent)
    assert os.listdir(parent) == ["installed"]


def test_a_failure_at_the_rename_leaves_nothing_behind(tmp_path, monkeypatch):
    def failing_rename(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(archives.os, "rename", failing_rename)
    with pytest.raises(OSError, match="cross-device"):
        extract_atomically(SKILL, tmp_path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad", ["../escape.md", "/tmp/escape.md", "a/../../escape.md"])
def test_extraction_never_writes_outside_its_folder(tmp_path, bad):
    parent = tmp_path / "plugins"
    with pytest.raises(ArchiveRefused):
        extract_atomically({"ok.md": b"1", bad: b"2"}, parent)
    assert os.listdir(parent) == []
    assert sorted(os.listdir(tmp_path)) == ["plugins"]


def test_extraction_checks_each_target_even_past_the_name_check(tmp_path, monkeypatch):
    # Were the name check ever wrong, the resolved-path check still stops the write.
    monkeypatch.setattr(archives, "normalise", lambda name, **kw: name)
    parent = tmp_path / "plugins"
    with pytest.raises(ArchiveRefused, match="outside the folder"):
        extract_atomically({"ok.md": b"1", "../escape.md": b"2"}, parent)
    assert os.listdir(parent) == []
    assert sorted(os.listdir(tmp_path)) == ["plugins"]


def test_extraction_refuses_a_file_that_is_also_a_folder(tmp_path):
    with pytest.raises(FileExistsError):
        extract_atomically({"a": b"1", "a/b": b"2"}, tmp_path)
    assert os.listdir(tmp_path) == []


def test_reading_never_touches_the_disk(tmp_path, monkeypatch):
    def no_disk(*args, **kwargs):
        raise AssertionError("read_archive touched the disk")

    for kind in archives.KINDS:
        data = write_archive(SKILL, kind)
        with monkeypatch.context() as m:
            m.setattr("builtins.open", no_disk)
            m.setattr(os, "open", no_disk)
            m.setattr(tarfile.TarFile, "extractall", no_disk)
            m.setattr(zipfile.ZipFile, "extractall", no_disk)
            assert read_archive(data, kind, max_total=LIMIT) == SKILL


def test_the_gzip_stream_is_decompressed_in_bounded_steps():
    # A 1 KB slice of zeros can never unpack to more than the asked size at once.
    stream = archives._GunzipStream(gzip.compress(ZEROS), LIMIT * 2)
    assert len(stream.read(4096)) == 4096
    assert stream.pos <= archives.GZIP_FEED
