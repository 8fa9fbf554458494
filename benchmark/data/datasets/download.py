"""Download and unpack the public NLM Open-i chest X-ray archives (Indiana University collection).

``download`` streams a URL into ``<dest>.part``, resumes an interrupted transfer with an HTTP ``Range``
request, checks the length and (when one is pinned) the SHA-256, and only then renames the file into place.
``safe_extract`` unpacks a tar archive after checking every member (no absolute paths, no ``..``, no links
out of the target, no device files) into a temporary folder beside the target, and moves the result into
place only when everything was extracted. ``download_openi`` does both for the two Open-i archives.

NLM publishes no checksums for these archives, so the manifest below pins none: the SHA-256 computed on the
first download is written beside the archive as ``<name>.sha256`` so that it can be pinned afterwards.
"""

import hashlib
import http.client
import os
import posixpath
import re
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmark.core.errors import XbenchError

try:  # lzma is optional in some Python builds
    from lzma import LZMAError
except ImportError:  # pragma: no cover
    LZMAError = OSError  # type: ignore[misc,assignment]


@dataclass(frozen=True)
class Archive:
    """One downloadable archive: where it lives and, when known, its SHA-256 and size in bytes."""

    name: str
    url: str
    sha256: str | None
    size: int | None
    note: str


_UNPINNED = (
    "NLM publishes no checksum; the sha256 computed on the first download is written beside the "
    "archive as <name>.sha256 so it can be pinned here"
)

OPENI_ARCHIVES: tuple[Archive, ...] = (
    Archive(
        name="NLMCXR_png.tgz",
        url="https://openi.nlm.nih.gov/imgs/collections/NLMCXR_png.tgz",
        sha256=None,
        size=None,
        note="Indiana University chest X-rays as PNG (7,470 images); " + _UNPINNED,
    ),
    Archive(
        name="NLMCXR_reports.tgz",
        url="https://openi.nlm.nih.gov/imgs/collections/NLMCXR_reports.tgz",
        sha256=None,
        size=None,
        note="Indiana University radiology reports as ecgen-radiology XML (3,955 reports); " + _UNPINNED,
    ),
)

_USER_AGENT = "xbench-download/0.1 (+https://openi.nlm.nih.gov)"
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, socket.timeout, OSError)


# --------------------------------------------------------------------------------------------- download


def _sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise XbenchError(f"invalid sha256 {sha256!r}: expected 64 hexadecimal characters")
    return value


def _make_progress(enabled: bool, description: str):
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


def _network_error(url: str, part: Path, exc: BaseException) -> XbenchError:
    reason = (
        exc.reason if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError) else exc
    )
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
    reason = " ".join(str(reason).split()) or type(exc).__name__
    kept = part.stat().st_size if part.exists() else 0
    if kept:
        tail = f"the partial file {part} ({kept} bytes) is kept and a re-run of the same command resumes from it"
    else:
        tail = "nothing was saved; check the URL and your connection, then re-run the same command"
    if isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500:
        tail += " (a 4xx status usually means the URL is wrong or the file moved)"
    return XbenchError(f"download of {url} failed: {reason}; {tail}")


def _content_range(header: str | None) -> tuple[int, int | None] | None:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None); None when missing or unreadable."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", header)
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    timeout: float = 60,
) -> str:
    """Download ``url`` to ``dest`` and return the file's SHA-256 (hex).

    The bytes go to ``<dest>.part`` first; an existing ``.part`` is resumed with ``Range: bytes=N-``. The
    part is renamed to ``dest`` only when its length matches the server's and its SHA-256 matches ``sha256``
    (when given). An existing ``dest`` whose checksum matches (or any existing ``dest`` when no checksum is
    given) is not downloaded again.
    """
    dest = Path(dest)
    expected = _normalise_sha256(sha256)
    part = dest.with_suffix(dest.suffix + ".part")

    if dest.is_file():
        actual = _sha256_file(dest, chunk_size)
        if expected is None or actual == expected:
            return actual
        dest.unlink()  # stale or corrupt copy: fetch it again

    dest.parent.mkdir(parents=True, exist_ok=True)
    bar = _make_progress(progress, dest.name)
    try:
        if bar is not None:
            bar.start()
        actual = _fetch(url, part, bar, chunk_size, timeout)
    finally:
        if bar is not None:
            bar.stop()

    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        raise XbenchError(
            f"checksum mismatch for {dest.name} downloaded from {url}: expected sha256 {expected}, got "
            f"{actual}; the bad file was removed: re-run to download it again, and if the mismatch persists "
            "the file on the server changed, so check the source and update the pinned sha256"
        )
    os.replace(part, dest)
    return actual


def _fetch(url: str, part: Path, bar, chunk_size: int, timeout: float) -> str:
    """Fill ``part`` with the complete body of ``url`` (resuming it when it exists); return its SHA-256."""
    task = bar.add_task(part.name.removesuffix(".part"), total=None) if bar is not None else None
    for attempt in range(2):  # a second attempt only after the server refused the range (416)
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset and attempt == 0:
                part.unlink()  # the part is already as long as the file or longer: start again cleanly
                continue
            raise _network_error(url, part, exc) from exc
        except ValueError as exc:  # "unknown url type" and the like
            raise XbenchError(f"cannot download {url!r}: {exc}; give a full http(s):// URL") from exc
        except _NETWORK_ERRORS as exc:
            raise _network_error(url, part, exc) from exc

        with response:
            status = getattr(response, "status", None) or 200
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            if offset and status == 206:
                content_range = _content_range(response.headers.get("Content-Range"))
                if content_range is None or content_range[0] != offset:
                    response.close()
                    part.unlink()  # an answer for other bytes than asked: start again cleanly
                    if attempt == 0:
                        continue
                    raise XbenchError(
                        f"download of {url} failed: the server answered a range request with "
                        "the wrong bytes; re-run the same command to download from scratch"
                    )
                total = (
                    content_range[1]
                    if content_range[1] is not None
                    else (offset + length if length is not None else None)
                )
                mode = "ab"
            else:  # 200: the whole file (a server that ignores Range also lands here)
                offset = 0
                total = length
                mode = "wb"

            digest = hashlib.sha256()
            if offset:
                with part.open("rb") as fh:
                    while block := fh.read(chunk_size):
                        digest.update(block)
            if bar is not None:
                bar.update(task, total=total, completed=offset)
            received = offset
            try:
                with part.open(mode) as out:
                    while block := response.read(chunk_size):
                        out.write(block)
                        digest.update(block)
                        received += len(block)
                        if bar is not None:
                            bar.update(task, completed=received)
            except _NETWORK_ERRORS as exc:
                raise _network_error(url, part, exc) from exc

        if total is not None and received < total:
            raise _network_error(url, part, ConnectionError(f"connection closed after {received} of {total} bytes"))
        if total is not None and received > total:
            part.unlink()
            raise XbenchError(
                f"download of {url} failed: received {received} bytes but the server announced "
                f"{total}; the file was removed, re-run the same command to download it again"
            )
        return digest.hexdigest()
    raise AssertionError("unreachable")  # pragma: no cover


# ------------------------------------------------------------------------------------------ safe_extract


def _resolve(path: str, links: dict[str, str], depth: int = 0) -> list[str] | None:
    """The components of archive path ``path`` after following the archive's own symlinks, or None when it
    leaves the archive root (or the links loop)."""
    if depth > 40:
        return None
    resolved: list[str] = []
    for component in path.split("/"):
        if component in ("", "."):
            continue
        if component == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        resolved.append(component)
        key = "/".join(resolved)
        if key in links:
            target = links[key]
            if target.startswith("/"):
                return None
            followed = _resolve("/".join(resolved[:-1] + [target]), links, depth + 1)
            if followed is None:
                return None
            resolved = followed
    return resolved


def _check_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Raise XbenchError on the first member that could write outside the target or is a device file."""

    def refuse(member: tarfile.TarInfo, why: str) -> XbenchError:
        return XbenchError(
            f"refusing to extract {archive}: member {member.name!r} {why}; the archive is "
            "unsafe or corrupt, delete it and download it again from a trusted source"
        )

    links: dict[str, str] = {}
    for member in members:
        name = member.name
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            raise refuse(member, "has an absolute path")
        if "\x00" in name:
            raise refuse(member, "has a NUL byte in its name")
        norm = posixpath.normpath(name)
        if norm == ".." or norm.startswith("../"):
            raise refuse(member, "escapes the target folder with '..'")
        if member.ischr() or member.isblk():
            raise refuse(member, "is a device file")
        if member.isfifo():
            raise refuse(member, "is a FIFO (special file)")
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise refuse(member, f"has an unsupported type {member.type!r}")
        if member.issym() or member.islnk():
            if member.linkname.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", member.linkname):
                raise refuse(member, f"links to the absolute path {member.linkname!r}")
            if member.issym():
                links[norm] = member.linkname
    for member in members:
        norm = posixpath.normpath(member.name)
        parent = posixpath.dirname(norm)
        if _resolve(parent, links) is None:
            raise refuse(member, "is written through a link that points outside the target folder")
        if member.issym():
            if _resolve(posixpath.join(parent, member.linkname), links) is None:
                raise refuse(member, f"links outside the target folder (to {member.linkname!r})")
        elif member.islnk() and _resolve(member.linkname, links) is None:
            raise refuse(member, f"hard-links outside the target folder (to {member.linkname!r})")


def _plan_moves(src: Path, dst: Path, moves: list[tuple[Path, Path]]) -> None:
    """Merge ``src`` into ``dst``: folders present on both sides are merged, anything else replaced."""
    for entry in sorted(src.iterdir()):
        there = dst / entry.name
        entry_is_dir = entry.is_dir() and not entry.is_symlink()
        there_is_dir = there.is_dir() and not there.is_symlink()
        if entry_is_dir and there_is_dir:
            _plan_moves(entry, there, moves)
        elif there_is_dir:
            raise XbenchError(
                f"cannot extract {entry.name!r} over the existing folder {there}; move or delete that folder and re-run"
            )
        else:
            moves.append((entry, there))


def safe_extract(archive: Path, target: Path) -> int:
    """Extract tar ``archive`` (any compression) into ``target``; return the number of files extracted.

    Every member is checked before anything is written; the extraction goes to a temporary folder beside
    ``target`` (with tarfile's ``data`` filter) and is moved into place only when it succeeded completely.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise XbenchError(f"archive {archive} does not exist; download it first")
    corrupt = (tarfile.TarError, EOFError, zlib.error, LZMAError, OSError)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            _check_members(archive, members)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name or 'extract'}.", suffix=".partial", dir=target.parent))
            try:
                tar.extractall(tmp, members=members, filter="data")
                moves: list[tuple[Path, Path]] = []
                target.mkdir(parents=True, exist_ok=True)
                _plan_moves(tmp, target, moves)
                for src, dst in moves:
                    if dst.is_symlink() or dst.exists():
                        if dst.is_dir() and not dst.is_symlink():
                            shutil.rmtree(dst)
                        else:
                            dst.unlink()
                    os.replace(src, dst)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except XbenchError:
        raise
    except tarfile.FilterError as exc:
        raise XbenchError(
            f"refusing to extract {archive}: {exc}; the archive is unsafe, delete it and "
            "download it again from a trusted source"
        ) from exc
    except corrupt as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise XbenchError(
            f"cannot extract {archive}: it is corrupt or truncated ({detail}); delete it and download it again"
        ) from exc
    return sum(1 for member in members if member.isreg())


# ----------------------------------------------------------------------------------------- download_openi


def _find_images(root: Path, skip: Iterable[Path]) -> tuple[Path, int] | None:
    """The folder under ``root`` holding the most PNG files (shallowest first on a tie)."""
    skip = {p.resolve() for p in skip}
    best: tuple[int, int, str] | None = None
    best_dir: Path | None = None
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (here / d).resolve() not in skip)
        count = sum(1 for f in filenames if f.lower().endswith(".png"))
        if not count:
            continue
        key = (-count, len(here.relative_to(root).parts), str(here))
        if best is None or key < best:
            best, best_dir = key, here
    return None if best_dir is None else (best_dir, -best[0])


def download_openi(root: Path, *, progress: bool = True, archives: Iterable[Archive] = OPENI_ARCHIVES) -> Path:
    """Download the Open-i archives into ``root/downloads/``, extract them into ``root`` and return the folder
    that holds the PNG images (``root/NLMCXR_png`` or ``root`` itself, depending on the archive layout)."""
    root = Path(root)
    archives = tuple(archives)
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    console = None
    if progress:
        from rich.console import Console

        console = Console(stderr=True)

    for archive in archives:
        dest = downloads / archive.name
        sidecar = dest.with_name(dest.name + ".sha256")
        expected = archive.sha256
        if expected is None and dest.is_file() and sidecar.is_file():
            recorded = sidecar.read_text().split()
            expected = recorded[0] if recorded else None  # verify a previous download against its record
        digest = download(archive.url, dest, sha256=expected, progress=progress)
        if archive.size is not None and (actual_size := dest.stat().st_size) != archive.size:
            dest.unlink()
            raise XbenchError(
                f"{archive.name} from {archive.url} has {actual_size} bytes, expected "
                f"{archive.size}; the file was removed: re-run to download it again"
            )
        if archive.sha256 is None:
            sidecar.write_text(f"{digest}  {archive.name}\n")
            if console is not None:
                console.print(
                    f"{archive.name}: sha256 {digest} (no published checksum; saved to {sidecar}, "
                    "pin it in OPENI_ARCHIVES)"
                )
        marker = dest.with_name(dest.name + ".extracted")
        if marker.is_file() and marker.read_text().strip() == digest:
            continue  # already extracted from this very file
        count = safe_extract(dest, root)
        marker.write_text(digest + "\n")
        if console is not None:
            console.print(f"{archive.name}: extracted {count} files into {root}")

    found = _find_images(root, skip=[downloads])
    if found is None:
        raise XbenchError(
            f"no PNG images found under {root} after extracting "
            f"{', '.join(a.name for a in archives)}; delete {downloads} and re-run"
        )
    images, count = found
    if console is not None:
        console.print(f"images: {images} ({count} PNG files)")
    return images
