#!/usr/bin/env python
"""Render pages of the built book to PNG with headless Chromium (to look at them as a reader would).

    jupyter-book build book/ -W -n --keep-going             # -> book/_build/html
    python scripts/render_pages.py                           # intro + every lesson -> book/_build/screenshots
    python scripts/render_pages.py notebooks/02_stitching results --height 4000 --out book/_build/shots

Needs Debian's ``chromium`` (``apt-get install -y chromium``). Chromium runs fully offline: no
sandbox, no GPU, no background networking or component updates, a throw-away profile.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HTML = REPO / "book" / "_build" / "html"


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("no Chromium found: install it with `apt-get install -y chromium` (Debian) and retry")


def default_pages(html: Path) -> List[str]:
    lessons = sorted(p.relative_to(html).with_suffix("").as_posix() for p in (html / "notebooks").glob("[0-9][0-9]_*.html"))
    return ["intro"] + lessons + ["results", "exercises"]


def render(page: str, html: Path, out: Path, width: int = 1280, height: int = 2000, timeout: int = 90,
           chromium: Optional[str] = None) -> Path:
    """Screenshot ``<html>/<page>.html`` to ``<out>/<page with / as __>.png``; returns the PNG path."""
    src = html / f"{page}.html"
    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist: build the book first (jupyter-book build book/) or check the page name")
    out.mkdir(parents=True, exist_ok=True)
    png = out / (page.replace("/", "__") + ".png")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            chromium or find_chromium(),
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={width},{height}",
            "--virtual-time-budget=5000", src.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not png.is_file():
        raise RuntimeError(f"chromium did not write {png} (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return png


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pages", nargs="*", help="page names without .html (e.g. intro notebooks/02_stitching); default: all lessons")
    ap.add_argument("--html", type=Path, default=DEFAULT_HTML, help="the built book's html folder")
    ap.add_argument("--out", type=Path, default=None, help="where the PNGs go (default <html>/../screenshots)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=2000)
    args = ap.parse_args(argv)
    if not (args.html / "index.html").is_file():
        raise SystemExit(f"{args.html} holds no built book: run `jupyter-book build book/` first")
    out = args.out or args.html.parent / "screenshots"
    chromium = find_chromium()
    for page in args.pages or default_pages(args.html):
        try:
            print(render(page, args.html, out, args.width, args.height, chromium=chromium))
        except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"FAILED {page}: {e}", file=sys.stderr)
            raise SystemExit(1)


if __name__ == "__main__":
    main()
