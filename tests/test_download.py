"""benchmark.data.datasets.download against a local HTTP server (127.0.0.1, port 0) run by the tests."""

import hashlib
import io
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benchmark.core.errors import XbenchError
from benchmark.data.datasets.download import OPENI_ARCHIVES, Archive, download, download_openi, safe_extract

# --------------------------------------------------------------------------------------------- the server


class _State:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.ignore_range = False  # answer 200 with the whole file even when asked for a range
        self.fail_midway = 0  # the next N requests send half of their body, then close
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    state: _State  # set on a subclass per server

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        state = self.state
        range_header = self.headers.get("Range")
        with state.lock:
            state.requests.append((self.path, range_header))
            fail = state.fail_midway > 0
            if fail:
                state.fail_midway -= 1
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        status, start = 200, 0
        if range_header and not state.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", range_header.strip())
            assert match, f"unexpected Range header {range_header!r}"
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if fail:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    state = _State()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# ----------------------------------------------------------------------------------------------- helpers


def _payload(n: int = 200_003) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(n))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _png(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (4, 4), color=seed).save(buf, format="PNG")
    return buf.getvalue()


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -------------------------------------------------------------------------------------------- download


def test_full_download_with_checksum(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    dest = tmp_path / "out" / "a.bin"
    digest = download(f"{server.url}/a.bin", dest, sha256=_sha(data).upper(), progress=False, chunk_size=4096)
    assert digest == _sha(data)
    assert dest.read_bytes() == data
    assert not dest.with_suffix(".bin.part").exists()
    assert server.requests == [("/a.bin", None)]


def test_complete_file_is_not_downloaded_again(server, tmp_path):
    data = _payload(1000)
    server.files["/a.bin"] = data
    dest = tmp_path / "a.bin"
    download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False)
    assert download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False) == _sha(data)
    assert download(f"{server.url}/a.bin", dest, progress=False) == _sha(data)
    assert len(server.requests) == 1


def test_stale_dest_with_wrong_checksum_is_replaced(server, tmp_path):
    data = _payload(1000)
    server.files["/a.bin"] = data
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"old contents")
    assert download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False) == _sha(data)
    assert dest.read_bytes() == data


def test_resume_after_interrupted_transfer(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    server.fail_midway = 1
    dest = tmp_path / "a.bin"
    part = tmp_path / "a.bin.part"
    with pytest.raises(XbenchError) as err:
        download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False, chunk_size=4096)
    message = str(err.value)
    assert f"{server.url}/a.bin" in message and "kept" in message and "resume" in message
    assert "\n" not in message
    assert not dest.exists()
    half = len(data) // 2
    assert part.read_bytes() == data[:half]

    digest = download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False, chunk_size=4096)
    assert digest == _sha(data)
    assert dest.read_bytes() == data
    assert not part.exists()
    assert server.requests == [("/a.bin", None), ("/a.bin", f"bytes={half}-")]


def test_resume_with_progress_bar(server, tmp_path):
    data = _payload(50_000)
    server.files["/a.bin"] = data
    (tmp_path / "a.bin.part").write_bytes(data[:10_000])
    assert download(f"{server.url}/a.bin", tmp_path / "a.bin", progress=True) == _sha(data)
    assert (tmp_path / "a.bin").read_bytes() == data


def test_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    server.ignore_range = True
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(data[:1234])
    assert download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False) == _sha(data)
    assert dest.read_bytes() == data
    assert server.requests == [("/a.bin", "bytes=1234-")]


def test_part_longer_than_file_416_restarts_cleanly(server, tmp_path):
    data = _payload(5000)
    server.files["/a.bin"] = data
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(b"x" * 6000)
    assert download(f"{server.url}/a.bin", dest, sha256=_sha(data), progress=False) == _sha(data)
    assert dest.read_bytes() == data
    assert server.requests == [("/a.bin", "bytes=6000-"), ("/a.bin", None)]


def test_wrong_checksum_removes_file(server, tmp_path):
    data = _payload(1000)
    server.files["/a.bin"] = data
    dest = tmp_path / "a.bin"
    wrong = "0" * 64
    with pytest.raises(XbenchError) as err:
        download(f"{server.url}/a.bin", dest, sha256=wrong, progress=False)
    message = str(err.value)
    assert "a.bin" in message and wrong in message and _sha(data) in message and "\n" not in message
    assert not dest.exists()
    assert not (tmp_path / "a.bin.part").exists()


def test_malformed_checksum_is_rejected(tmp_path):
    with pytest.raises(XbenchError, match="sha256"):
        download("http://127.0.0.1:9/a.bin", tmp_path / "a.bin", sha256="abc", progress=False)


def test_404_is_an_xbench_error(server, tmp_path):
    with pytest.raises(XbenchError) as err:
        download(f"{server.url}/missing.tgz", tmp_path / "missing.tgz", progress=False)
    assert f"{server.url}/missing.tgz" in str(err.value) and "404" in str(err.value)
    assert not (tmp_path / "missing.tgz").exists()


def test_connection_refused_is_an_xbench_error(tmp_path):
    import socket

    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(XbenchError, match=f"127.0.0.1:{port}"):
        download(f"http://127.0.0.1:{port}/a.bin", tmp_path / "a.bin", progress=False, timeout=2)


# ---------------------------------------------------------------------------------------- safe_extract


def test_safe_extract_good_archive(tmp_path):
    archive = _tar(
        tmp_path / "good.tgz",
        [("top/a.txt", b"a"), ("top/sub/b.txt", b"bb"), ("c.txt", b"ccc"), _link("top/link", "a.txt")],
    )
    target = tmp_path / "out"
    assert safe_extract(archive, target) == 3
    assert (target / "top" / "sub" / "b.txt").read_bytes() == b"bb"
    assert (target / "c.txt").read_bytes() == b"ccc"
    assert (target / "top" / "link").resolve() == (target / "top" / "a.txt").resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.tgz", "out"]  # no temporary folder left


def test_safe_extract_merges_into_existing_target(tmp_path):
    target = tmp_path / "out"
    (target / "top").mkdir(parents=True)
    (target / "top" / "keep.txt").write_text("keep")
    (target / "top" / "a.txt").write_text("old")
    archive = _tar(tmp_path / "good.tar", [("top/a.txt", b"new")], mode="w")
    assert safe_extract(archive, target) == 1
    assert (target / "top" / "a.txt").read_text() == "new"
    assert (target / "top" / "keep.txt").read_text() == "keep"


@pytest.mark.parametrize(
    "entries, words",
    [
        ([("ok.txt", b"fine"), ("../evil.txt", b"evil")], "'..'"),
        ([("ok.txt", b"fine"), ("sub/../../evil.txt", b"evil")], "'..'"),
        ([("ok.txt", b"fine"), ("/tmp/evil.txt", b"evil")], "absolute"),
        ([("ok.txt", b"fine"), _link("evil", "../outside.txt")], "outside"),
        ([("ok.txt", b"fine"), _link("evil", "/etc/passwd")], "absolute"),
        ([("ok.txt", b"fine"), _link("evil", "../outside.txt", tarfile.LNKTYPE)], "outside"),
        ([_link("d", "."), _link("d/up", "..")], "outside"),  # escapes only through another link
        ([("ok.txt", b"fine"), _link("fifo", "", tarfile.FIFOTYPE)], "FIFO"),
        ([("ok.txt", b"fine"), _link("dev", "", tarfile.CHRTYPE)], "device"),
        ([("ok.txt", b"fine"), _link("blk", "", tarfile.BLKTYPE)], "device"),
    ],
)
def test_safe_extract_refuses_unsafe_members(tmp_path, entries, words):
    base = tmp_path / "base"
    base.mkdir()
    archive = _tar(tmp_path / "bad.tgz", entries)
    target = base / "out"
    with pytest.raises(XbenchError) as err:
        safe_extract(archive, target)
    message = str(err.value)
    assert "bad.tgz" in message and words in message and "\n" not in message
    bad_name = [e.name if isinstance(e, tarfile.TarInfo) else e[0] for e in entries][-1]
    assert repr(bad_name) in message
    assert list(base.iterdir()) == []  # nothing in or beside the target
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "outside.txt").exists()


def test_truncated_archive_is_an_xbench_error(tmp_path):
    good = _tar(tmp_path / "good.tgz", [(f"f{i}.bin", _payload(20_000 + i)) for i in range(5)])
    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    base = tmp_path / "base"
    base.mkdir()
    with pytest.raises(XbenchError, match="truncated.tgz.*corrupt or truncated"):
        safe_extract(truncated, base / "out")
    assert list(base.iterdir()) == []


def test_not_an_archive_is_an_xbench_error(tmp_path):
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"this is not a tar archive" * 100)
    with pytest.raises(XbenchError, match="junk.tgz"):
        safe_extract(junk, tmp_path / "out")
    with pytest.raises(XbenchError, match="does not exist"):
        safe_extract(tmp_path / "missing.tgz", tmp_path / "out")


# -------------------------------------------------------------------------------------- download_openi


def test_manifest():
    assert [a.name for a in OPENI_ARCHIVES] == ["NLMCXR_png.tgz", "NLMCXR_reports.tgz"]
    for archive in OPENI_ARCHIVES:
        assert archive.url == f"https://openi.nlm.nih.gov/imgs/collections/{archive.name}"
        assert archive.sha256 is None and archive.size is None and archive.note


@pytest.mark.parametrize("prefix", ["", "NLMCXR_png/"])
def test_download_openi_end_to_end(server, tmp_path, prefix):
    pngs = {"CXR1_1_IM-0001-3001.png": _png(10), "CXR1_1_IM-0001-4001.png": _png(200)}
    png_tgz = _tar(tmp_path / "NLMCXR_png.tgz", [(prefix + name, data) for name, data in pngs.items()])
    xml = b"<eCitation><MedlineCitation/></eCitation>"
    reports_tgz = _tar(tmp_path / "NLMCXR_reports.tgz", [("ecgen-radiology/1.xml", xml)])
    server.files["/collections/NLMCXR_png.tgz"] = png_tgz.read_bytes()
    server.files["/collections/NLMCXR_reports.tgz"] = reports_tgz.read_bytes()
    pinned = _sha(reports_tgz.read_bytes())
    archives = (
        Archive("NLMCXR_png.tgz", f"{server.url}/collections/NLMCXR_png.tgz", None, None, "test"),
        Archive(
            "NLMCXR_reports.tgz",
            f"{server.url}/collections/NLMCXR_reports.tgz",
            pinned,
            reports_tgz.stat().st_size,
            "test",
        ),
    )
    root = tmp_path / "openi"
    images = download_openi(root, progress=False, archives=archives)

    assert images == (root / prefix.rstrip("/") if prefix else root)
    assert {p.name: p.read_bytes() for p in images.glob("*.png")} == pngs
    assert (root / "ecgen-radiology" / "1.xml").read_bytes() == xml
    assert (root / "downloads" / "NLMCXR_png.tgz").read_bytes() == png_tgz.read_bytes()
    sidecar = (root / "downloads" / "NLMCXR_png.tgz.sha256").read_text()
    assert sidecar.split() == [_sha(png_tgz.read_bytes()), "NLMCXR_png.tgz"]
    assert not (root / "downloads" / "NLMCXR_reports.tgz.sha256").exists()  # pinned: nothing to record
    assert not list(root.rglob("*.part"))

    # a re-run downloads nothing and returns the same folder
    count = len(server.requests)
    assert download_openi(root, progress=True, archives=archives) == images
    assert len(server.requests) == count


def test_download_openi_without_pngs_is_an_xbench_error(server, tmp_path):
    reports_tgz = _tar(tmp_path / "r.tgz", [("ecgen-radiology/1.xml", b"<x/>")])
    server.files["/r.tgz"] = reports_tgz.read_bytes()
    with pytest.raises(XbenchError, match="no PNG images"):
        download_openi(
            tmp_path / "root", progress=False, archives=(Archive("r.tgz", f"{server.url}/r.tgz", None, None, "test"),)
        )
