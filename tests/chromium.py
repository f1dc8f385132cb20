"""Headless Chromium, driven over its DevTools protocol: open a page, collect what its console
reports, take a screenshot.

The browser is Debian's `chromium` package (.ci/run installs it); the protocol is JSON over a
websocket, spoken with tornado's client (a dependency of Dask's distributed, named in the test
extra).
"""
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tornado.websocket import websocket_connect

BROWSER = shutil.which("chromium")
LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class Page:
    """What a page did while it loaded: its console errors, the counts `open_page` was asked
    for, and its screenshot (PNG bytes)."""

    def __init__(self, errors: list[str], screenshot: bytes, found: dict):
        self.errors, self.screenshot, self.found = errors, screenshot, found


def open_page(url: str, count: dict[str, str], show: str | None = None,
              settle: float = 1.0) -> Page:
    """Load `url` in a new headless Chromium; `count` maps names to CSS selectors whose matching
    elements (shown, with a size) are counted after the page settles; the screenshot shows
    the first element matching `show`, else the top of the page."""
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        log = Path(profile) / "stderr.txt"  # a file, not a pipe: a full pipe would stall it
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--remote-debugging-port=0", f"--user-data-dir={profile}/data",
                 "--window-size=1280,1000", "about:blank"], stderr=stderr,
                start_new_session=True)  # its own process group: its helpers end with it
        try:
            return asyncio.run(_visit(_endpoint(log, process), url, count, show, settle))
        finally:
            _close(process)


def _close(process) -> None:
    """End the browser and its helper processes (renderer, GPU, crash handler)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _endpoint(log: Path, process, timeout: float = 60.0) -> str:
    """The DevTools websocket address, which the browser prints when it is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if found := LISTENING.search(log.read_text()):
            return found.group(1)
        time.sleep(0.05)
    raise RuntimeError(f"chromium did not open its DevTools endpoint:\n{log.read_text()[-2000:]}")


async def _visit(endpoint, url, count, show, settle) -> Page:
    socket = await websocket_connect(endpoint, max_message_size=256 << 20)
    calls, errors = iter(range(1, 10**6)), []

    async def send(method, session=None, **params):
        """Send one command and wait for its answer, collecting the events in between."""
        number = next(calls)
        message = {"id": number, "method": method, "params": params}
        await socket.write_message(json.dumps(message | ({"sessionId": session} if session
                                                         else {})))
        while True:
            reply = json.loads(await socket.read_message())
            _collect(reply, errors)
            if reply.get("id") == number:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    target = (await send("Target.createTarget", url="about:blank"))["targetId"]
    session = (await send("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        await send(f"{domain}.enable", session)
    await send("Page.navigate", session, url=url)
    await send("Runtime.evaluate", session, awaitPromise=True, expression=(
        "new Promise(done => document.readyState === 'complete' ? done() :"
        " addEventListener('load', () => done()))"))
    await asyncio.sleep(settle)  # scripts run after load (search index, fonts) may still fail
    found = {}
    for name, selector in count.items():
        shown = (f"[...document.querySelectorAll({json.dumps(selector)})]"
                 ".filter(e => e.getBoundingClientRect().width > 0).length")
        found[name] = (await send("Runtime.evaluate", session, expression=shown))["result"]["value"]
    if show:
        await send("Runtime.evaluate", session, expression=(
            f"document.querySelector({json.dumps(show)}).scrollIntoView({{block: 'center'}})"))
        await asyncio.sleep(0.2)
    shot = await send("Page.captureScreenshot", session, format="png")
    socket.close()
    return Page(errors, base64.b64decode(shot["data"]), found)


def _collect(message: dict, errors: list[str]) -> None:
    """Add what a DevTools event reports as an error: console.error and .assert, uncaught
    exceptions, and the browser's own log entries (a resource that failed to load)."""
    method, params = message.get("method"), message.get("params", {})
    if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
        errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
    elif method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        errors.append(details.get("exception", {}).get("description", details["text"]))
    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
        entry = params["entry"]
        errors.append(f"{entry['text']} ({entry.get('url', '')})")
