"""The report in a real browser: headless Chromium loads it with no console error and shows the epsilon.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3
and 4, NUL-separated JSON), with the standard library only. The page is loaded, then the test reads
every console call, uncaught exception, log entry (failed loads are logged as errors) and network
request, and the text the page shows. Skipped where no Chromium is installed (``.ci/run`` installs
Debian's ``chromium`` package).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from privmed.privacy.report import PrivacyReport
from privmed.report.html import write_report

TIMEOUT = 60.0


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "/usr/bin/chromium"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    """What the browser saw: the page's visible text, problems reported while loading, and every URL requested."""

    text: str
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images_ok: bool = False


class _DevTools:
    """A minimal DevTools-protocol client over the pipe Chromium opens on fds 3 (commands in) and 4 (replies out)."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_browser_read, self._write = os.pipe()
        self._read, from_browser_write = os.pipe()

        def give_pipes() -> None:  # in the child: the pipes must sit exactly on fds 3 and 4, inheritable
            inbound, outbound = os.dup(to_browser_read), os.dup(from_browser_write)
            os.dup2(inbound, 3)
            os.dup2(outbound, 4)

        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}", "--remote-debugging-pipe",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False,
            preexec_fn=give_pipes,  # noqa: PLW1509 - the only way to place the pipes on fds 3 and 4; nothing else runs in the child
        )  # fmt: skip
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        reply = self.wait(lambda m: m.get("id") == self._id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait(self, wanted: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Read messages until ``wanted(message)``; every other message is kept in ``events``."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                ready, _, _ = select.select([self._read], [], [], max(left, 0))
                if not ready:
                    raise TimeoutError("Chromium did not answer in time")
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            message = json.loads(raw)
            if wanted(message):
                return message
            self.events.append(message)

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.process.wait(timeout=10)
        except (RuntimeError, TimeoutError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._write)
            os.close(self._read)


def load_page(executable: str, url: str, profile: Path) -> PageLoad:
    """Open ``url`` in a fresh headless Chromium and report what happened while it loaded."""
    browser = _DevTools(executable, profile)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            browser.call(f"{domain}.enable", session=session)
        browser.call("Page.navigate", {"url": url}, session=session)
        browser.wait(lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == session)

        def evaluate(expression: str) -> Any:
            return browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)["result"].get("value")

        load = PageLoad(
            text=evaluate("document.body.innerText"),
            images_ok=evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"),
        )
    finally:
        browser.close()
    for event in browser.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            load.problems.append(f"uncaught: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
            load.problems.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            load.problems.append(f"log {params['entry']['level']}: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            load.requests.append(params["request"]["url"])
    return load


@pytest.fixture(scope="module")
def chromium() -> str:
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    return executable


def test_the_checker_catches_console_errors_exceptions_and_failed_loads(chromium: str, tmp_path: Path) -> None:
    """The browser check itself can fail: a page with a console error, an exception and a missing picture."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>bad</title></head><body><p>epsilon</p>'
                   '<img src="missing.png" alt="missing"><script>console.error("boom"); notDefined();</script></body></html>')  # fmt: skip
    load = load_page(chromium, bad.as_uri(), tmp_path / "profile")
    assert any(p.startswith("console.error") for p in load.problems)
    assert any(p.startswith("uncaught") for p in load.problems)
    assert any("missing.png" in p for p in load.problems)
    assert not load.images_ok


@pytest.mark.parametrize("names", [("R", "S"), ("C",)], ids=["dpwgan-run-and-samples", "cadp-release"])
def test_report_loads_in_chromium_without_errors_and_shows_the_epsilon(
    chromium: str, releases: dict[str, Path], tmp_path: Path, names: tuple[str, ...]
) -> None:
    out = write_report([releases[name] for name in names], tmp_path / "report.html", ledger=releases["ledger"])
    load = load_page(chromium, out.resolve().as_uri(), tmp_path / "profile")
    assert load.problems == []
    assert load.images_ok
    assert all(url.startswith(("file:", "data:", "about:")) for url in load.requests), load.requests
    for name in names:
        report = PrivacyReport.from_json(releases[name] / "privacy.json")
        assert f"epsilon = {report.epsilon:.3g}" in load.text
        assert f"per {report.unit}" in load.text
