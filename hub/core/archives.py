"""Upload archives (``.tar.gz``, ``.zip``) read into memory, refused when hostile; written back
deterministically; extracted atomically.

Skill folders and plugins arrive as archives. Nothing here touches the disk while reading, and
nothing an archive says is trusted: sizes are counted while decompressing, names are checked
before anything is kept, and every refusal names its entry.

- ``archive_kind(filename, content_type, data) -> "tar.gz" | "zip"``: the magic bytes decide;
  a file name or media type that names a kind must agree with them. Anything else is refused.
- ``read_archive(data, kind, *, max_entries=1000, max_total, max_ratio=200.0)`` -> ``{path:
  bytes}``: every regular file, its path a normalised POSIX relative path (``./`` and empty
  components dropped; folders are implied by the paths, so an empty folder is not kept).
- ``write_archive(files, kind) -> bytes``: deterministic (sorted entries, mtime fixed at the
  epoch (tar) or 1980-01-01 (zip), uid/gid 0 and no owner names, mode 0644, a gzip header
  without name or mtime), so the same files give the same bytes and
  ``read_archive(write_archive(f, k), k, max_total=...) == f``.
- ``extract_atomically(files, parent) -> Path``: the files written into a fresh owner-only
  folder under ``parent``, fsynced, then renamed into place under a fresh name (returned);
  any failure removes everything written.
- ``archive_limits(settings)``: the keyword limits from settings (``max_total`` is
  ``AETHER_UPLOAD_LIMIT``), for ``read_archive(data, kind, **archive_limits(settings))``.

Every refusal is ``ArchiveRefused(entry, reason)``, a 422 problem with code ``unsafe_archive``
and ``errors: [{"field": "body.archive:<entry>", "message": reason}]`` (``body.archive`` alone
when no entry is concerned, e.g. a corrupt gzip header). The entry is shown printable: bytes
that are not UTF-8 and control characters appear as ``\\xNN`` escapes. ``archive_kind``'s
refusal is its subclass ``NotAnArchive`` (code ``not_an_archive``). The refusals, in
``docs/behaviour.md`` ("Archives"):

- a name that is absolute (``/x``), has a ``..`` component, a backslash, a colon (a drive
  letter ``C:`` or an NTFS stream ``a:b`` on Windows), a control character or a bidirectional
  formatting character, is not UTF-8, is empty, or has a component over 255 bytes; a component
  ending in a dot or a space, or a Windows device name (``CON``, ``nul.txt``, ``COM1``…); a
  character that NFKC normalisation turns into ``/``, ``\\``, ``:`` or ``..`` (the fullwidth
  U+FF0F, U+FF0E);
- anything but a regular file or a folder: symbolic and hard links, character and block
  devices, FIFOs, sparse files, unknown tar types; encrypted zip entries;
- a duplicate name, also after normalisation (``a.md``, ``./a.md``), case-insensitively and
  after Unicode NFC normalisation (``A.md``, ``a.md``: a case-insensitive file system, as on
  macOS and Windows, would merge them), and a name that is both a file and a folder;
- more than ``max_entries`` entries (folders count);
- more than ``max_total`` bytes of files, counted while decompressing (a size header that lies
  gets no further than the bytes it really unpacks; a zip entry whose data differs from its
  header in size or CRC is corrupt); a tar stream's headers may add at most 4 KiB an entry;
- a compression ratio over ``max_ratio`` for one entry or for the whole archive, checked once
  more than ``RATIO_FLOOR`` (1 MiB) has been unpacked (small files are never bombs);
- zip entries whose data overlap (the "overlapping files" bomb), bytes hidden between entries
  or before the central directory, a local header or an Info-ZIP Unicode Path field that names
  another file than the central directory does (what another reader would see instead);
- in a tar, a header whose own name field (what readers that ignore PAX and GNU long names
  use) would escape, a PAX size that differs from the header's, a global PAX header setting a
  path or a size;
- a truncated or corrupt archive, or data after the gzip stream that is not another member.

Archives inside the archive are files like any other: never opened.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import struct
import tarfile
import tempfile
import unicodedata
import uuid
import zipfile
import zlib
from io import BytesIO
from pathlib import Path
from typing import Any

from hub.core.problems import Unprocessable

KINDS = ("tar.gz", "zip")
MAX_ENTRIES = 1000
MAX_RATIO = 200.0
RATIO_FLOOR = 1024 * 1024
HEADER_ALLOWANCE = 4096  # tar stream bytes per entry beyond its data (headers, PAX, padding)
NAME_MAX = 255
CHUNK = 64 * 1024
RECENT = 64 * 1024  # tarfile reads 10 KiB ahead of the header it has just parsed
GZIP_FEED = 1024  # compressed bytes fed at a time: the per-entry ratio is exact to this much

_TAR_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_TAR_TYPE_NAMES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}
_ZIP_TYPE_NAMES = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}
_BIDI = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{port}{n}" for port in ("COM", "LPT") for n in [*"0123456789", "\u00b9", "\u00b2", "\u00b3"]
}
_GZIP_TYPES = {
    "application/gzip",
    "application/x-gzip",
    "application/x-gtar",
    "application/x-tgz",
    "application/x-compressed-tar",
    "application/tar+gzip",
}
_ZIP_TYPES = {"application/zip", "application/x-zip-compressed", "application/x-zip"}
_NEUTRAL_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


class ArchiveRefused(Unprocessable):
    """A 422 naming the entry of an archive the hub will not read."""

    code = "unsafe_archive"

    def __init__(self, entry: str, reason: str) -> None:
        self.entry = entry
        self.reason = reason
        field = f"body.archive:{entry}" if entry else "body.archive"
        where = f"archive entry {entry!r}" if entry else "archive"
        super().__init__(
            f"Refused {where}: {reason}.", errors=[{"field": field, "message": reason}]
        )


class NotAnArchive(ArchiveRefused):
    """The upload is neither a .tar.gz nor a .zip archive (or its name says otherwise)."""

    code = "not_an_archive"


def archive_limits(settings: Any) -> dict[str, Any]:
    """The keyword limits of ``read_archive`` from settings: the upload limit as ``max_total``."""
    return {"max_entries": MAX_ENTRIES, "max_total": settings.upload_limit, "max_ratio": MAX_RATIO}


def display(name: str | bytes) -> str:
    """A name fit for a message: bytes that are not UTF-8 and control characters escaped."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "surrogateescape")
    out = []
    for ch in name[:300]:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


# -- kind --------------------------------------------------------------------------------------


def _kind_from_bytes(data: bytes) -> str | None:
    if data[:2] == b"\x1f\x8b":
        return "tar.gz"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    return None


def archive_kind(filename: str | None, content_type: str | None, data: bytes) -> str:
    """``"tar.gz"`` or ``"zip"``: from the magic bytes, with the name and media type agreeing."""
    kind = _kind_from_bytes(data)
    if kind is None:
        raise NotAnArchive("", "neither a .tar.gz nor a .zip archive")
    name = (filename or "").lower()
    said_by_name = None
    if name.endswith((".tar.gz", ".tgz")):
        said_by_name = "tar.gz"
    elif name.endswith(".zip"):
        said_by_name = "zip"
    elif name.endswith((".tar", ".gz", ".bz2", ".xz", ".zst", ".7z", ".rar")):
        raise NotAnArchive(
            "", f"the file name says {display(filename or '')!r}, not .tar.gz or .zip"
        )
    media = (content_type or "").split(";", 1)[0].strip().lower()
    said_by_type = None
    if media in _GZIP_TYPES:
        said_by_type = "tar.gz"
    elif media in _ZIP_TYPES:
        said_by_type = "zip"
    elif media not in _NEUTRAL_TYPES:
        raise NotAnArchive("", f"media type {media!r} is neither a .tar.gz nor a .zip archive")
    for said, by in ((said_by_name, "file name"), (said_by_type, "media type")):
        if said is not None and said != kind:
            raise NotAnArchive("", f"the {by} says {said} but the content is {kind}")
    return kind


# -- names -------------------------------------------------------------------------------------


def _escape_reason(name: str) -> str | None:
    """Why the name would lead outside the folder on some system, or None."""
    if "\\" in name:
        return "the name holds a backslash (a folder separator on Windows)"
    if ":" in name:
        return "the name holds a colon (a drive letter or a file stream on Windows)"
    if name.startswith("/"):
        return "the path is absolute"
    if ".." in name.split("/"):
        return "the path has a '..' component"
    return None


def normalise(name: str, *, folder: bool = False) -> str:
    """The POSIX relative path an entry name means, or ``ArchiveRefused`` naming it.

    ``folder`` allows the archive's own root (``./``), answered as ``""``.
    """
    shown = display(name)
    if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in name):
        raise ArchiveRefused(shown, "the name is not UTF-8")
    for ch in name:
        if unicodedata.category(ch) == "Cc":
            raise ArchiveRefused(shown, "the name holds a control character")
        if ch in _BIDI:
            raise ArchiveRefused(shown, "the name holds a bidirectional formatting character")
    reason = _escape_reason(name)
    if reason is not None:
        raise ArchiveRefused(shown, reason)
    parts = [part for part in name.split("/") if part not in ("", ".")]
    for part in parts:
        if len(part.encode()) > NAME_MAX:
            raise ArchiveRefused(shown, f"a component is longer than {NAME_MAX} bytes")
        if part[-1] in ". ":
            raise ArchiveRefused(
                shown, "a component ends with a dot or a space (Windows drops them: 'a.' is 'a')"
            )
        if part.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
            raise ArchiveRefused(shown, f"{display(part)!r} is a device name on Windows")
    compatible = unicodedata.normalize("NFKC", name)
    if compatible != name and (
        compatible.count("/") != name.count("/")
        or "\\" in compatible
        or ":" in compatible
        or ".." in compatible.split("/")
    ):
        raise ArchiveRefused(
            shown,
            "the name holds a character that compatibility normalisation (NFKC) reads as "
            "'/', '\\', ':' or '..', as some systems do (a fullwidth solidus or full stop)",
        )
    if not parts and not folder:
        raise ArchiveRefused(shown, "the name is empty")
    return "/".join(parts)


def _fold(path: str) -> str:
    return unicodedata.normalize("NFC", path).casefold()


class _Names:
    """Claims paths once: duplicates, case-insensitive clashes and file/folder clashes refused."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.entries = 0
        self.seen: dict[str, tuple[str, str]] = {}
        self.explicit: set[str] = set()

    def count(self, shown: str) -> None:
        self.entries += 1
        if self.entries > self.max_entries:
            raise ArchiveRefused(shown, f"more than {self.max_entries} entries")

    def claim(self, path: str, kind: str, shown: str) -> None:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            self._claim("/".join(parts[:depth]), "folder", shown, explicit=False)
        self._claim(path, kind, shown, explicit=True)

    def _claim(self, path: str, kind: str, shown: str, *, explicit: bool) -> None:
        key = _fold(path)
        prior = self.seen.get(key)
        if prior is not None:
            prior_path, prior_kind = prior
            if prior_path != path:
                raise ArchiveRefused(
                    shown,
                    f"{display(path)!r} and {display(prior_path)!r} differ only in case or "
                    "Unicode normalisation (a case-insensitive file system would merge them)",
                )
            if prior_kind != kind:
                raise ArchiveRefused(shown, f"{display(path)!r} is both a file and a folder")
            if explicit and key in self.explicit:
                raise ArchiveRefused(shown, "a duplicate name")
        self.seen[key] = (path, kind)
        if explicit:
            self.explicit.add(key)


class _Budget:
    """Bytes unpacked so far, against the total and the archive's overall ratio."""

    def __init__(self, compressed: int, max_total: int, max_ratio: float) -> None:
        self.max_total = max_total
        self.max_ratio = max_ratio
        self.ratio_cap = max(RATIO_FLOOR, int(max_ratio * max(compressed, 1)))
        self.total = 0

    def add(self, n: int, shown: str) -> None:
        self.total += n
        if self.total > self.max_total:
            raise ArchiveRefused(shown, f"the files unpack to more than {self.max_total} bytes")
        if self.total > self.ratio_cap:
            raise ArchiveRefused(
                shown,
                f"the archive unpacks to more than {self.max_ratio:g} times its size "
                "(a compression bomb)",
            )

    def entry_ratio(self, size: int, compressed: int, shown: str) -> None:
        if size > RATIO_FLOOR and size > self.max_ratio * max(compressed, 1):
            raise ArchiveRefused(
                shown,
                f"the entry unpacks to more than {self.max_ratio:g} times its compressed size "
                "(a compression bomb)",
            )


# -- reading -----------------------------------------------------------------------------------


def read_archive(
    data: bytes,
    kind: str,
    *,
    max_entries: int = MAX_ENTRIES,
    max_total: int,
    max_ratio: float = MAX_RATIO,
) -> dict[str, bytes]:
    """Every regular file of the archive, by normalised path; ``ArchiveRefused`` if hostile."""
    names = _Names(max_entries)
    budget = _Budget(len(data), max_total, max_ratio)
    if kind == "tar.gz":
        return _read_tar(data, names, budget)
    if kind == "zip":
        return _read_zip(data, names, budget)
    raise NotAnArchive("", f"unknown archive kind {kind!r}")


class _GunzipStream:
    """A read-only file of the decompressed gzip stream, bounded, tracking input consumed.

    ``tarfile`` reads from it in stream mode (``r|``), so every byte the tar stream holds —
    headers, PAX records, data of skipped members — passes through this bound.
    """

    def __init__(self, data: bytes, limit: int) -> None:
        self.data = data
        self.pos = 0  # compressed bytes consumed
        self.limit = limit
        self.produced = 0
        self.entry = ""
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._tail = b""
        self.recent = bytearray()  # the last RECENT bytes produced, for reading raw headers

    def block(self, offset: int) -> bytes | None:
        """The 512 bytes at ``offset`` of the tar stream, if still among the recent ones."""
        start = offset - (self.produced - len(self.recent))
        if start < 0 or start + 512 > len(self.recent):
            return None
        return bytes(self.recent[start : start + 512])

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = CHUNK
        out = bytearray()
        while len(out) < size:
            chunk = self._more(min(size - len(out), CHUNK))
            if not chunk:
                break
            out += chunk
            self.produced += len(chunk)
            self.recent += chunk
            del self.recent[: max(0, len(self.recent) - RECENT)]
            if self.produced > self.limit:  # checked per chunk: a huge PAX header stops here
                raise ArchiveRefused(
                    self.entry, f"the tar stream unpacks to more than {self.limit} bytes"
                )
        return bytes(out)

    def _more(self, want: int) -> bytes:
        while True:
            if self._d.eof:
                rest = self._d.unused_data + self._tail + self.data[self.pos :]
                self.pos = len(self.data)
                self._tail = b""
                if not rest:
                    return b""
                if rest[:2] != b"\x1f\x8b":
                    raise ArchiveRefused("", "data after the end of the gzip stream")
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self.pos = len(self.data) - len(rest)
                continue
            if not self._tail:
                if self.pos >= len(self.data):
                    raise ArchiveRefused(self.entry, "the archive is truncated")
                self._tail = self.data[self.pos : self.pos + GZIP_FEED]
                self.pos += len(self._tail)
            try:
                out = self._d.decompress(self._tail, want)
            except zlib.error as exc:
                raise ArchiveRefused(self.entry, f"the gzip stream is corrupt ({exc})") from None
            self._tail = self._d.unconsumed_tail
            if out:
                return out


def _read_tar(data: bytes, names: _Names, budget: _Budget) -> dict[str, bytes]:
    limit = budget.max_total + HEADER_ALLOWANCE * (names.max_entries + 1) + 20 * 512
    stream = _GunzipStream(data, limit)
    files: dict[str, bytes] = {}
    shown = ""
    try:
        with tarfile.open(
            fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape"
        ) as tar:
            for member in tar:
                shown = display(member.name)
                stream.entry = shown
                names.count(shown)
                _check_raw_header(stream, tar, member, shown)
                if member.type == tarfile.DIRTYPE:
                    path = normalise(member.name, folder=True)
                    if path:
                        names.claim(path, "folder", shown)
                    continue
                if member.type not in _TAR_FILE_TYPES:
                    what = _TAR_TYPE_NAMES.get(member.type, f"of tar type {member.type!r}")
                    raise ArchiveRefused(shown, f"not a regular file or a folder: {what}")
                path = normalise(member.name)
                names.claim(path, "file", shown)
                start = stream.pos
                content = bytearray()
                reader = tar.extractfile(member)
                assert reader is not None  # a regular file always has a reader
                while chunk := reader.read(CHUNK):
                    content += chunk
                    budget.add(len(chunk), shown)
                    budget.entry_ratio(len(content), stream.pos - start, shown)
                if len(content) != member.size:
                    raise ArchiveRefused(shown, "the archive is truncated")
                files[path] = bytes(content)
        stream.entry = ""
        while stream.read(CHUNK):  # to the end: the gzip trailer's CRC, nothing after it
            pass
    except ArchiveRefused:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ArchiveRefused(shown, f"the tar archive is corrupt or truncated ({exc})") from None
    return files


def _check_raw_header(
    stream: _GunzipStream, tar: tarfile.TarFile, member: tarfile.TarInfo, shown: str
) -> None:
    """What a reader that ignores PAX and GNU long names would see cannot escape either.

    ``tarfile`` reads the name from a PAX ``path`` record or a GNU long name when there is
    one; older or simpler readers take the header's own name field (and its size). That name
    must not escape, the sizes must agree, and no global PAX header may set a path or a size
    (some readers apply it to every member that follows).
    """
    for key in ("path", "linkpath", "size"):
        if key in tar.pax_headers:
            raise ArchiveRefused(shown, f"a global PAX header sets {key!r}")
    block = stream.block(member.offset_data - 512)
    if block is None:
        raise ArchiveRefused(shown, "the entry's header could not be checked")
    name = block[:100].split(b"\0", 1)[0]
    if block[257:263] == b"ustar\0":  # POSIX ustar: a prefix field before the name
        prefix = block[345:500].split(b"\0", 1)[0]
        name = prefix + b"/" + name if prefix else name
    raw = name.decode("utf-8", "surrogateescape")
    if raw.rstrip("/") != member.name:
        reason = _escape_reason(raw)
        if reason is not None:
            raise ArchiveRefused(
                shown, f"its header's own name field ({display(raw)!r}, read by tools that "
                f"ignore PAX and GNU long names) is refused: {reason}",
            )  # fmt: skip
    if "size" in member.pax_headers and member.type in _TAR_FILE_TYPES:
        try:
            size = tarfile.nti(block[124:136])
        except tarfile.InvalidHeaderError:
            size = -1
        if size != member.size:
            raise ArchiveRefused(
                shown, "its PAX size differs from its header's (readers that ignore PAX would "
                "read other entries from its data)",
            )  # fmt: skip


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as stored, with bytes that are not UTF-8 kept as surrogate escapes."""
    raw = info.orig_filename
    if not info.flag_bits & 0x800:  # decoded as cp437: take back its bytes, read them as UTF-8
        raw = raw.encode("cp437").decode("utf-8", "surrogateescape")
    return raw


def _read_zip(data: bytes, names: _Names, budget: _Budget) -> dict[str, bytes]:
    try:
        zf = zipfile.ZipFile(BytesIO(data))
    except UnicodeDecodeError as exc:
        raise ArchiveRefused(display(bytes(exc.object)), "the name is not UTF-8") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveRefused("", f"the zip archive is corrupt or truncated ({exc})") from None
    files: dict[str, bytes] = {}
    with zf:
        infos = zf.infolist()
        if len(infos) > names.max_entries:
            raise ArchiveRefused(
                display(_zip_name(infos[names.max_entries])),
                f"more than {names.max_entries} entries",
            )
        _check_layout(data, infos, zf.start_dir)
        for info in infos:
            name = _zip_name(info)
            shown = display(name)
            names.count(shown)
            folder = name.endswith("/")
            # The Unix mode's type, whatever system the entry claims to come from: extractors
            # that honour it regardless exist.
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind in _ZIP_TYPE_NAMES:
                raise ArchiveRefused(
                    shown, f"not a regular file or a folder: {_ZIP_TYPE_NAMES[kind]}"
                )
            if kind == stat.S_IFDIR or info.external_attr & 0x10:
                folder = True
            if folder:
                path = normalise(name, folder=True)
                if path:
                    names.claim(path, "folder", shown)
                continue
            if info.flag_bits & 0x1:
                raise ArchiveRefused(shown, "the entry is encrypted")
            path = normalise(name)
            names.claim(path, "file", shown)
            content = bytearray()
            try:
                with zf.open(info) as reader:
                    while chunk := reader.read(CHUNK):
                        content += chunk
                        budget.add(len(chunk), shown)
                        budget.entry_ratio(len(content), info.compress_size, shown)
            except ArchiveRefused:
                raise
            except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError,
                    zlib.error, RuntimeError) as exc:  # fmt: skip
                raise ArchiveRefused(shown, f"the entry is corrupt ({exc})") from None
            if len(content) != info.file_size:
                raise ArchiveRefused(shown, "the entry's size differs from its header")
            files[path] = bytes(content)
    return files


def _raw_zip_name(info: zipfile.ZipInfo) -> bytes:
    return info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")


def _unicode_paths(extra: bytes) -> list[str]:
    """The names in Info-ZIP Unicode Path fields (0x7075), which some extractors prefer."""
    names, at = [], 0
    while at + 4 <= len(extra):
        kind, size = struct.unpack_from("<HH", extra, at)
        if kind == 0x7075 and size >= 5:
            names.append(extra[at + 9 : at + 4 + size].decode("utf-8", "surrogateescape"))
        at += 4 + size
    return names


def _check_layout(data: bytes, infos: list[zipfile.ZipInfo], central: int) -> None:
    """A reader that walks the local headers sees exactly what the central directory says.

    Entries lie end to end from offset 0 up to the central directory (a data descriptor of at
    most 24 bytes between them: too little to hide a 30-byte local header), none overlapping
    another (the overlapping-files bomb); each local header and Unicode Path field names the
    central entry's file. So the bytes the hub accepted hold nothing another reader would see.
    """
    expected, slack, shown = 0, 0, ""
    for info in sorted(infos, key=lambda info: info.header_offset):
        shown = display(_zip_name(info))
        at = info.header_offset
        if at < expected:
            raise ArchiveRefused(shown, "its data overlap another entry")
        if at > expected + slack:
            raise ArchiveRefused(shown, "bytes are hidden before the entry")
        if data[at : at + 4] != b"PK\x03\x04" or len(data) < at + 30:
            raise ArchiveRefused(shown, "the entry's local header is missing")
        name_len, extra_len = struct.unpack_from("<HH", data, at + 26)
        start = at + 30
        if data[start : start + name_len] != _raw_zip_name(info):
            raise ArchiveRefused(shown, "its local header names another file")
        local_extra = data[start + name_len : start + name_len + extra_len]
        for path in _unicode_paths(info.extra) + _unicode_paths(local_extra):
            if path != _zip_name(info):
                raise ArchiveRefused(shown, f"its Unicode Path field names {display(path)!r}")
        expected = start + name_len + extra_len + info.compress_size
        slack = 24 if info.flag_bits & 0x08 else 0
    if central < expected:
        raise ArchiveRefused(shown, "its data overlap the central directory")
    if central > expected + slack:
        raise ArchiveRefused(shown, "bytes are hidden before the central directory")


# -- writing -----------------------------------------------------------------------------------


def write_archive(files: dict[str, bytes], kind: str) -> bytes:
    """The files as a deterministic archive: the same files always give the same bytes."""
    names = _Names(max(len(files), 1))
    for path in sorted(files):
        shown = display(path)
        if normalise(path) != path:
            raise ArchiveRefused(shown, "not a normalised relative path")
        names.claim(path, "file", shown)
    buffer = BytesIO()
    if kind == "tar.gz":
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9)
        with gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(files):
                info = tarfile.TarInfo(path)
                info.size = len(files[path])
                info.mtime = 0
                info.mode = 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, BytesIO(files[path]))
    elif kind == "zip":
        with zipfile.ZipFile(buffer, "w") as zf:
            for path in sorted(files):
                info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
                info.create_system = 3
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, files[path], compresslevel=9)
    else:
        raise NotAnArchive("", f"unknown archive kind {kind!r}")
    return buffer.getvalue()


# -- extracting --------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def extract_atomically(files: dict[str, bytes], parent: Path) -> Path:
    """The files written under a fresh folder in ``parent``, all or nothing; its path.

    They go to a temporary folder first (owner-only, named ``.tmp-…``), each file opened with
    ``O_EXCL | O_NOFOLLOW`` after checking that it resolves inside that folder; everything is
    fsynced, then the folder is renamed to a fresh name. Any failure removes all of it.
    """
    parent = Path(parent)
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))
    root = staging.resolve()
    final: Path | None = None
    renamed = False
    try:
        folders = {root}
        for path in sorted(files):
            relative = normalise(path)
            target = (root / relative).resolve()
            if not target.is_relative_to(root) or target == root:
                raise ArchiveRefused(display(path), "the path leads outside the folder")
            for folder in reversed(target.parents):
                if folder.is_relative_to(root) and folder not in folders:
                    folder.mkdir(mode=0o700)
                    folders.add(folder)
            flags = (
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
            )
            fd = os.open(target, flags, 0o600)
            try:
                view = memoryview(files[path])
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            _fsync_dir(folder)
        while final is None or final.exists():
            final = parent / uuid.uuid4().hex
        os.rename(staging, final)
        renamed = True
        _fsync_dir(parent)
        return final
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if renamed and final is not None:
            shutil.rmtree(final, ignore_errors=True)
        raise
