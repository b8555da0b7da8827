"""Serving the labelling app and driving it in Debian's headless Chromium, for the browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ITEM_JS = "() => { const e = document.querySelector('[class*=st-key-item-]'); return e ? e.className : null; }"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited early:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(url)


@contextmanager
def serve_app(
    store: Path | None, project: Path | None = None, extra: tuple[str, ...] = (), cwd: Path = ROOT
) -> Iterator[str]:
    """`prefkit app` on a free port, as a user starts it (no store: pass `--demo` in `extra`), run in
    `cwd`; yields its URL and stops it afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "prefkit.cli", "app", "--port", str(port), *extra]
    if store:
        cmd += ["--store", str(store)]
    if project:
        cmd += ["--project", str(project)]
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_app(proc)


def stop_app(proc: subprocess.Popen) -> None:
    """Stop `prefkit app` as a supervisor does (SIGTERM; it stops its server), SIGKILL if it hangs.

    Its output pipe stays open until it has gone: a Streamlit whose stdout reader vanished cannot
    print "Stopping…" and never stops."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()  # the kernel then kills the server too (prefkit app asks for that)
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


@contextmanager
def chromium() -> Iterator:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def current_item(page, kind: str = "") -> str:
    """Which item is on screen (the page keys the item's container by it), once one of `kind` is."""
    page.locator(f"[class*='st-key-item-{kind}']").first.wait_for(timeout=20_000)
    return page.evaluate(ITEM_JS)


def wait_next_item(page, before: str) -> None:
    """Wait until the page shows a different item than `before`."""
    page.wait_for_function(f"b => {{ const c = ({ITEM_JS})(); return c && c !== b; }}", arg=before, timeout=20_000)


def until(act, done, tries: int = 15, pause: float = 0.7) -> None:
    """`act()` again until `done()`: on a loaded machine a key or a click can land while the page
    is still rerunning, and be lost."""
    for _ in range(tries):
        act()
        time.sleep(pause)
        if done():
            return
    raise AssertionError(f"{act} had no effect after {tries} tries")


def press_until(page, key: str, done, tries: int = 15) -> None:
    """Press `key` until `done()`: on a loaded machine the page may not listen for keys yet."""
    until(lambda: page.locator("body").press(key), done, tries)


def log_in(page, url: str, login: str, password: str) -> None:
    page.goto(url)
    page.get_by_role("textbox", name="Login").fill(login)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
