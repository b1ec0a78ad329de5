"""``sfr-teach data download la`` end to end against a local HTTP server (127.0.0.1, Range support)."""
from __future__ import annotations

import filecmp
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from sfr_teach.cli import main
from sfr_teach.data import DownloadError, LADataset, download_la
from sfr_teach.data.download import DEFAULT_LA_URL, fetch_file

SUB = "2018LA_Seg_Training Set"


class _Handler(SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=N-`` support; records every request; can cut a file short."""

    log: list = []
    cut: dict = {}  # url path -> bytes to send before closing early
    honour_range = True  # False: answer every request with the whole file (200), as some servers do

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self.log.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and self.honour_range and rng.startswith("bytes=") and rng.endswith("-"):
            start, status = int(rng[6:-1]), 206
            if start >= len(data):
                self.send_error(416, "Range Not Satisfiable")
                return
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        n = self.cut.pop(self.path, None)
        self.wfile.write(body if n is None else body[:n])
        if n is not None:
            self.close_connection = True


@pytest.fixture()
def mirror(tmp_path, la_dir):
    """A served folder in the public layout: 3 train volumes + 1 test volume linked from the real data."""
    site = tmp_path / "site"
    names = (la_dir / "train.list").read_text().split()[:4]
    for n in names:
        (site / SUB / n).mkdir(parents=True)
        os.symlink(la_dir / SUB / n / "mri_norm2.h5", site / SUB / n / "mri_norm2.h5")
    (site / "train.list").write_text("\n".join(names[:3]) + "\n")
    (site / "test.list").write_text(names[3] + "\n")
    _Handler.log, _Handler.cut, _Handler.honour_range = [], {}, True

    def handler(*a, **kw):
        return _Handler(*a, directory=str(site), **kw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield site, names, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _cli(dest, url, *extra):
    return main(["data", "download", "la", "--dest", str(dest), "--base-url", url, "--quiet", *extra])


def test_default_url_is_the_uamt_data_folder():
    assert DEFAULT_LA_URL == "https://raw.githubusercontent.com/yulequan/UA-MT/master/data"


def test_download_byte_identical_then_rerun_fetches_nothing(mirror, tmp_path, capsys):
    site, names, url = mirror
    dest = tmp_path / "LA"
    assert _cli(dest, url) == 0
    assert "LA data ready" in capsys.readouterr().out
    for rel in ["train.list", "test.list"] + [f"{SUB}/{n}/mri_norm2.h5" for n in names]:
        assert filecmp.cmp(site / rel, dest / rel, shallow=False), rel
    assert not list(dest.rglob("*.part"))
    assert any(p.endswith("/2018LA_Seg_Training%20Set/" + names[0] + "/mri_norm2.h5") for p, _ in _Handler.log)
    ds = LADataset(dest)  # what arrived is a usable dataset
    assert ds.train_names == names[:3] and ds.test_names == names[3:]
    assert ds.split(labeled=1).test_source == "test.list" and ds.load(names[3]).shape[2] == 88
    _Handler.log.clear()
    assert _cli(dest, url) == 0
    assert _Handler.log == []  # everything complete: not a single request


def test_limit_fetches_first_volumes_only(mirror, tmp_path):
    _, names, url = mirror
    dest = tmp_path / "LA"
    assert _cli(dest, url, "--limit", "1") == 0
    got = sorted(p.parent.name for p in (dest / SUB).glob("*/mri_norm2.h5"))
    assert got == [names[0]]


def test_truncated_part_resumes_with_range(mirror, tmp_path):
    site, names, url = mirror
    rel = f"{SUB}/{names[0]}/mri_norm2.h5"
    full = (site / rel).read_bytes()
    dest = tmp_path / "LA"
    (dest / rel).parent.mkdir(parents=True)
    half = len(full) // 2
    (dest / (rel + ".part")).write_bytes(full[:half])
    assert _cli(dest, url) == 0
    assert (dest / rel).read_bytes() == full
    ranges = [r for p, r in _Handler.log if p.endswith(names[0] + "/mri_norm2.h5")]
    assert ranges == [f"bytes={half}-"]


def test_server_ignoring_range_restarts_the_file(mirror, tmp_path):
    site, names, url = mirror
    _Handler.honour_range = False
    rel = f"{SUB}/{names[0]}/mri_norm2.h5"
    dest = tmp_path / "LA"
    (dest / rel).parent.mkdir(parents=True)
    (dest / (rel + ".part")).write_bytes(b"stale bytes that must not stay in front")
    download_la(dest, base_url=url, limit=1, progress=False)
    assert filecmp.cmp(site / rel, dest / rel, shallow=False)


def test_cut_connection_is_an_error_then_resumes(mirror, tmp_path):
    site, names, url = mirror
    rel = f"{SUB}/{names[1]}/mri_norm2.h5"
    _Handler.cut["/" + rel.replace(" ", "%20")] = 100_000
    dest = tmp_path / "LA"
    with pytest.raises(DownloadError) as e:
        download_la(dest, base_url=url, progress=False)
    assert "mri_norm2.h5" in str(e.value) and names[1] in str(e.value) and "re-run" in str(e.value)
    assert (dest / (rel + ".part")).stat().st_size == 100_000
    download_la(dest, base_url=url, progress=False)
    assert filecmp.cmp(site / rel, dest / rel, shallow=False)
    assert [r for p, r in _Handler.log if names[1] in p][-1] == "bytes=100000-"


def test_404_is_a_clear_error(mirror, tmp_path, capsys):
    site, names, url = mirror
    (site / SUB / names[2] / "mri_norm2.h5").unlink()
    assert _cli(tmp_path / "LA", url) == 1
    err = capsys.readouterr().err
    assert "download failed" in err and "HTTP 404" in err and names[2] in err and url in err
    assert _cli(tmp_path / "LA2", url + "/nothing-here") == 1  # wrong base URL: train.list itself is missing
    assert "nothing-here/train.list: HTTP 404" in capsys.readouterr().err


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match=r"http://127\.0\.0\.1:9/x\.h5: cannot connect"):
        fetch_file("http://127.0.0.1:9/x.h5", tmp_path / "x.h5", timeout=5)
    assert not (tmp_path / "x.h5").exists()


def test_optional_test_list(mirror, tmp_path):
    site, names, url = mirror
    (site / "test.list").unlink()
    dest = download_la(tmp_path / "LA", base_url=url, progress=False)
    assert not (dest / "test.list").exists() and LADataset(dest).test_names is None
    assert np.isfinite(LADataset(dest).load(names[0]).image).all()
