"""Download the public preprocessed LA data (urllib only, resumable).

The public copy lives in the UA-MT repository's ``data/`` folder::

    <base>/train.list   <base>/test.list   <base>/2018LA_Seg_Training%20Set/<ID>/mri_norm2.h5

Each file is written to ``<file>.part`` first and renamed once its size matches the server's
Content-Length; an interrupted ``.part`` is resumed with an HTTP ``Range`` request, and files that
are already complete are skipped without asking the server. Re-running the same command is always
safe and finishes what is missing.
"""
from __future__ import annotations

import http.client
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import List, Optional, Union

from .la import LA_FILE, LA_SUBDIR, _read_list

DEFAULT_LA_URL = "https://raw.githubusercontent.com/yulequan/UA-MT/master/data"
CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download failed; the message names the URL or file and what to do.

    ``status`` is the HTTP status code when the server answered with an error, else None.
    """

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


def _url(base_url: str, rel: str) -> str:
    return base_url.rstrip("/") + "/" + urllib.parse.quote(rel)


def _expected_total(resp, offset: int) -> Optional[int]:
    """Full file size from Content-Range (206) or Content-Length (200), None when unknown."""
    crange = resp.headers.get("Content-Range")
    if resp.status == 206 and crange and "/" in crange:
        total = crange.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    length = resp.headers.get("Content-Length")
    if length is None or not length.strip().isdigit():
        return None
    return int(length) + (offset if resp.status == 206 else 0)


def fetch_file(url: str, dest: Union[str, Path], timeout: float = 30) -> bool:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a partial ``.part``.

    Returns False when ``dest`` already existed (nothing fetched), True after a download.
    Raises :class:`DownloadError` on HTTP/URL errors and on a short file (the ``.part`` is kept).
    """
    dest = Path(dest)
    if dest.is_file():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "sfr-teach"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the .part is not a prefix the server knows: start over
            part.unlink()
            return fetch_file(url, dest, timeout)
        raise DownloadError(
            f"{url}: HTTP {e.code} {e.reason}; check that the file exists there (or pass --base-url "
            "pointing at a mirror of the UA-MT data/ folder)",
            status=e.code,
        ) from e
    except (urllib.error.URLError, socket.timeout, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{url}: cannot connect ({reason}); check the network or --base-url and re-run") from e
    got = 0
    with resp:
        if resp.status != 206:  # the server ignored the Range header: start from byte 0
            offset = 0
        total = _expected_total(resp, offset)
        try:
            with open(part, "ab" if offset else "wb") as f:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    got += len(chunk)
        except (http.client.IncompleteRead, socket.timeout, ConnectionError, OSError) as e:
            raise DownloadError(
                f"{dest}: download from {url} was interrupted after {offset + got} bytes ({e}); "
                "re-run the same command to resume"
            ) from e
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"{dest}: incomplete download from {url} ({size} of {total} bytes); re-run the same command to resume"
        )
    part.replace(dest)
    return True


def download_la(
    dest: Union[str, Path],
    base_url: str = DEFAULT_LA_URL,
    limit: Optional[int] = None,
    progress: bool = True,
    timeout: float = 30,
) -> Path:
    """Download the LA lists and h5 volumes into ``dest`` (created); returns ``dest``.

    Fetches ``train.list`` and, when the server has it, ``test.list``; then the volumes of both
    lists, or only the first ``limit`` volumes of train.list when ``limit`` is given. Files already
    complete are skipped; partial ones resume. Raises :class:`DownloadError`.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"{dest}: cannot create the destination folder ({e}); choose another --dest") from e
    fetch_file(_url(base_url, "train.list"), dest / "train.list", timeout)
    names: List[str] = _read_list(dest / "train.list")
    try:
        fetch_file(_url(base_url, "test.list"), dest / "test.list", timeout)
    except DownloadError as e:
        if e.status != 404:  # test.list is optional in a mirror
            raise
    if limit is not None:
        names = names[: max(int(limit), 0)]
    elif (dest / "test.list").is_file():
        names += [n for n in _read_list(dest / "test.list") if n not in names]
    fetched = 0
    bar = tqdm(names, desc="LA volumes", unit="file", disable=not progress)
    for name in bar:
        rel = f"{LA_SUBDIR}/{name}/{LA_FILE}"
        fetched += fetch_file(_url(base_url, rel), dest / rel, timeout)
        bar.set_postfix(new=fetched)
    return dest
