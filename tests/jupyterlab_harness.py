"""A real JupyterLab on 127.0.0.1 driven by Debian's Chromium through Playwright, for the e2e test and the
latency benchmark (recipe: ../shared/browser-testing.md).

Isolation: a temporary root, config, runtime, workspace and settings directory per run; the news toast off.
Safety net: every console error and every request to a host other than 127.0.0.1 is recorded, because an ES
module that fails to load (say, a CDN import offline) fails silently in JupyterLab.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def missing_requirements() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (scripts/install.sh installs Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
        import jupyterlab  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[dev]')"
    widget = Path(__file__).resolve().parent.parent / "qscope_widgets" / "static" / "widget.js"
    if not widget.exists():
        return f"{widget} is not built (bash scripts/install.sh builds js/)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    root: Path
    runtime: Path
    proc: subprocess.Popen
    log: Path

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}/api/{path}", timeout=5) as r:
            return json.loads(r.read())

    def kernel_client(self):
        """A second client on the notebook's running kernel, to ask it what it computed."""
        from jupyter_client import BlockingKernelClient

        sessions = self.api("sessions")
        if len(sessions) != 1:
            raise RuntimeError(f"expected one kernel session, found {len(sessions)}")
        kid = sessions[0]["kernel"]["id"]
        kc = BlockingKernelClient(connection_file=str(self.runtime / f"kernel-{kid}.json"))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        return kc


def kernel_eval_json(kc: Any, code: str, timeout: float = 60) -> Any:
    """Run ``code`` in the kernel; its last line must print one JSON document, which is returned."""
    out: list[str] = []
    reply = kc.execute_interactive(code, timeout=timeout,
                                   output_hook=lambda m: out.append(m["content"].get("text", ""))
                                   if m["msg_type"] == "stream" else None)
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"kernel error: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
    return json.loads("".join(out).strip().splitlines()[-1])


def strip_outputs(nb: dict) -> dict:
    """A notebook with no outputs, execution counts or saved widget state."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb.get("metadata", {}).pop("widgets", None)
    return nb


@contextlib.contextmanager
def jupyterlab(workdir: Path, notebooks: list[Path], app: str = "lab", saved: bool = False) -> Iterator[Lab]:
    """Start JupyterLab (``app="lab"``) or Notebook 7 (``app="notebook"``) serving copies of ``notebooks``;
    stop it on every path.

    By default the copies have no saved outputs, so whatever the page shows comes from this kernel;
    ``saved=True`` serves them as saved (outputs and widget state), trusted, as a user re-opening them would.
    """
    root = workdir / "root"
    root.mkdir(parents=True)
    cfg, runtime, settings, workspaces, data = (workdir / n for n in ("config", "runtime", "settings", "workspaces",
                                                                       "data"))
    for d in (cfg, runtime, settings, workspaces, data):
        d.mkdir()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(cfg), "JUPYTER_RUNTIME_DIR": str(runtime),
           "JUPYTER_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    for nb in notebooks:
        content = json.loads(nb.read_text())
        (root / nb.name).write_text(json.dumps(content if saved else strip_outputs(content)))
        if saved:
            subprocess.run([sys.executable, "-m", "jupyter", "trust", str(root / nb.name)], env=env, check=True,
                           capture_output=True)
    notif = settings / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True)
    (notif / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port = _free_port()
    log = workdir / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyter", app, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True", "--allow-root",
           f"--ServerApp.root_dir={root}"]
    cmd += ([f"--LabApp.news_url=", f"--LabApp.workspaces_dir={workspaces}", f"--LabApp.user_settings_dir={settings}"]
            if app == "lab" else [f"--JupyterNotebookApp.user_settings_dir={settings}",
                                  f"--JupyterNotebookApp.workspaces_dir={workspaces}"])
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=root)
    lab = Lab(f"http://127.0.0.1:{port}", root, runtime, proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                lab.api("status")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield lab
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# The tutorials' "Open in Colab" badge is a markdown image from colab.research.google.com: the notebook's text,
# not the widget, asks for it, and offline it fails harmlessly.
ALLOWED_FOREIGN = ("https://colab.research.google.com/assets/colab-badge.svg",)


@dataclass
class BrowserWatch:
    """What the page did that a passing test must not hide."""

    console_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    ws_bytes_in: int = 0

    def attach(self, page: Any) -> None:
        def on_console(msg: Any) -> None:
            if msg.type == "error" and (msg.location or {}).get("url") not in ALLOWED_FOREIGN:
                self.console_errors.append(f"{msg.text} ({(msg.location or {}).get('url', '')})")

        def on_request(req: Any) -> None:
            host = req.url.split("/")[2] if "://" in req.url else ""
            if (req.url.startswith(("http", "ws")) and not host.startswith("127.0.0.1")
                    and req.url not in ALLOWED_FOREIGN):
                self.foreign_requests.append(req.url)

        def on_ws(ws: Any) -> None:
            ws.on("framereceived", lambda payload: self._count(payload))

        page.on("console", on_console)
        page.on("request", on_request)
        page.on("websocket", on_ws)

    def _count(self, payload: Any) -> None:
        self.ws_bytes_in += len(payload)


@contextlib.contextmanager
def chromium_page(viewport: tuple[int, int] = (1400, 1000)) -> Iterator[tuple[Any, BrowserWatch]]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            watch = BrowserWatch()
            watch.attach(page)
            yield page, watch
        finally:
            browser.close()


def open_and_run_all(page: Any, lab: Lab, notebook: str, timeout_ms: int = 120_000) -> None:
    """Open a notebook, wait for an idle kernel (not just an idle toolbar: see browser-testing.md), Run All,
    and wait until every cell has an execution count."""
    page.goto(f"{lab.url}/lab/tree/{notebook}")
    page.locator(".jp-Notebook").wait_for(timeout=timeout_ms)
    page.get_by_text("| Idle").first.wait_for(timeout=timeout_ms)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.wait_for_function(
        """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                   return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }""",
        timeout=timeout_ms)


def open_and_run_all_notebook7(page: Any, lab: Lab, notebook: str, timeout_ms: int = 120_000) -> None:
    """The same in Notebook 7 (one notebook per page; its kernel state read from the server's REST API)."""
    page.goto(f"{lab.url}/notebooks/{notebook}")
    page.locator(".jp-Notebook").wait_for(timeout=timeout_ms)
    deadline = time.monotonic() + timeout_ms / 1000
    while not any(s["kernel"]["execution_state"] == "idle" for s in lab.api("sessions")):
        if time.monotonic() > deadline:
            raise TimeoutError("the notebook's kernel never became idle")
        time.sleep(0.2)
    page.wait_for_timeout(500)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.wait_for_function(
        """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                   return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }""",
        timeout=timeout_ms)


def set_theme(page: Any, dark: bool) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    name = "JupyterLab Dark" if dark else "JupyterLab Light"
    page.locator(".lm-Menu-itemLabel", has_text=name).first.click()
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{str(not dark).lower()}'",
                           timeout=30_000)
    # the theme switch shows JupyterLab's splash over the page until the new stylesheet is in
    page.wait_for_function("() => !document.querySelector('#jupyterlab-splash')", timeout=30_000)
    page.wait_for_timeout(300)
