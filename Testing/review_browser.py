"""The reading room driven in a real browser: Playwright with Debian's chromium, ``pancreasseg review`` for real.

Used by ``Testing/test_review_browser.py``, and as a script to write the README's picture of the page::

    .venv/bin/python Testing/review_browser.py docs/images/reading-room.png

Every wait is for a state of the page (a text, an enabled button), never a fixed sleep.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where Debian's chromium lies (Playwright cannot download a browser here); PANCREASSEG_CHROMIUM overrides.
CHROMIUM = os.environ.get("PANCREASSEG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--headless=new", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                "--disable-dev-shm-usage"]
#: Bounds of the waits (s): starting the server, a run of the model, anything else.
START_TIMEOUT, RUN_TIMEOUT, STEP_TIMEOUT = 180, 240, 60
URL_LINE = re.compile(r"reading room for .*: (http://\S+)")


def missing_requirements() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    import importlib.util

    for name, what in (("trame_slicer", "trame-slicer"), ("playwright", "playwright")):
        if importlib.util.find_spec(name) is None:
            return f"{what} is not installed (pip install -e \".[review]\")"
    if not os.path.isfile(CHROMIUM):
        return f"chromium is not installed ({CHROMIUM}; apt-get install chromium)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_cases(folder: Path, seeds=(5, 6)) -> Path:
    """Small phantom CTs (about 160 x 128 x 50 voxels) in ``folder``, one per seed."""
    from PancreasSegLib.io.volumes import write_volume
    from PancreasSegLib.phantoms.generator import make_phantom

    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        image, _ = make_phantom(seed, preset="small")
        write_volume(image, folder / f"phantom_{seed}.nii.gz")
    return folder


class ReviewServer:
    """``pancreasseg review`` as a subprocess on a free loopback port; :attr:`url` once it listens."""

    def __init__(self, cases: Path, dataset: Path, log: Path, reviewer: str = "dr-browser") -> None:
        env = dict(os.environ, VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.port = free_port()
        self.log_path = log
        self._log = open(log, "w", encoding="utf-8")  # noqa: SIM115 (open for the server's whole life)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "PancreasSegLib", "review", str(cases), "--dataset", str(dataset),
             "--reviewer", reviewer, "--port", str(self.port), "--device", "cpu"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT), start_new_session=True)
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = URL_LINE.search(self.log_path.read_text(encoding="utf-8", errors="replace"))
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"the reading room exited ({self.proc.returncode}):\n{self.tail()}")
            time.sleep(0.2)
        raise TimeoutError(f"the reading room did not start in {START_TIMEOUT} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        self._log.close()


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)


def volume_ml(page) -> float:
    return float(re.search(r"([\d.]+) mL", page.locator("#volume").inner_text()).group(1))


def wait_for_volume_change(page, before: float) -> float:
    """Wait until the volume shown differs from ``before``; return it."""
    page.wait_for_function(
        "before => { const e = document.querySelector('#volume'); if (!e) return false;"
        " const m = e.textContent.match(/([\\d.]+) mL/); return m && Math.abs(parseFloat(m[1]) - before) > 0.05; }",
        arg=before, timeout=STEP_TIMEOUT * 1000)
    return volume_ml(page)


def axial_view_box(page) -> dict:
    """The bounding box of the axial view: the largest of the remote views (the layout is "Axial Primary")."""
    page.wait_for_function("Array.from(document.querySelectorAll('img.image-display-area'))"
                           ".filter(i => i.getBoundingClientRect().width > 100).length >= 3",
                           timeout=STEP_TIMEOUT * 1000)
    boxes = [img.bounding_box() for img in page.locator("img.image-display-area").all()]
    return max((b for b in boxes if b), key=lambda b: b["width"] * b["height"])


def erase_stroke(page, box: dict) -> None:
    """A mouse drag with the Erase effect across the middle of the axial view (three rows, zigzag)."""
    x0, x1 = box["x"] + 0.30 * box["width"], box["x"] + 0.70 * box["width"]
    rows = [box["y"] + f * box["height"] for f in (0.42, 0.47, 0.52)]
    page.mouse.move(x0, rows[0])
    page.mouse.down()
    for i, y in enumerate(rows):
        start, end = (x0, x1) if i % 2 == 0 else (x1, x0)
        page.mouse.move(start, y, steps=5)
        page.mouse.move(end, y, steps=25)
    page.mouse.up()


def write_readme_picture(out: Path) -> Path:
    """Open a phantom, segment it and save the page as the README shows it."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = ReviewServer(write_cases(tmp / "cases"), tmp / "Dataset501_Curated", tmp / "server.log")
        try:
            with sync_playwright() as playwright:
                browser = launch_browser(playwright)
                page = browser.new_page(viewport={"width": 1500, "height": 900})
                page.goto(server.url)
                page.locator("#worklist .v-list-item").first.click(timeout=STEP_TIMEOUT * 1000)
                page.locator("#segment:not([disabled])").click(timeout=STEP_TIMEOUT * 1000)
                page.locator("#volume").wait_for(timeout=RUN_TIMEOUT * 1000)
                axial_view_box(page)
                page.wait_for_timeout(1500)  # the last frame of each remote view
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out))
                browser.close()
        finally:
            server.stop()
    return out


if __name__ == "__main__":
    reason = missing_requirements()
    if reason:
        sys.exit(f"cannot take the picture: {reason}")
    print(write_readme_picture(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/reading-room.png")))
