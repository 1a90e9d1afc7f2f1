"""Hatch build hook: build the JS front end (``js/`` -> ``qscope_widgets/static/widget.{js,css}``) with esbuild.

Runs for wheels, editable installs and sdists. The bundle is rebuilt when it is missing or older than anything
under ``js/src`` (or js's package.json / package-lock.json / build.mjs); ``npm ci`` runs first when
``js/node_modules`` is missing. The bundle is gitignored, so it is declared an artifact and ships in the wheel.

Without node/npm: a prebuilt bundle is used as it is (with a warning when it looks stale); with no bundle at all
the build fails with a message saying what to install. ``QSCOPE_SKIP_JS=1`` skips the JS build (a bundle must
still exist).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUNDLE = ("qscope_widgets/static/widget.js", "qscope_widgets/static/widget.css", "qscope_widgets/static/static.js")
JS_INPUTS = ("src", "package.json", "package-lock.json", "build.mjs")


def _log(msg: str) -> None:
    print(f"[qscope-widgets js] {msg}", file=sys.stderr, flush=True)


def newest_input(js: Path) -> float:
    """The newest modification time among the front end's sources."""
    newest = 0.0
    for name in JS_INPUTS:
        p = js / name
        files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p] if p.exists() else []
        for f in files:
            newest = max(newest, f.stat().st_mtime)
    return newest


def bundle_state(root: Path) -> str:
    """``"missing"``, ``"stale"`` (older than a source) or ``"fresh"``."""
    outs = [root / b for b in BUNDLE]
    if not all(o.exists() for o in outs):
        return "missing"
    js = root / "js"
    if js.is_dir() and min(o.stat().st_mtime for o in outs) < newest_input(js):
        return "stale"
    return "fresh"


def _npm() -> str | None:
    return shutil.which("npm") if shutil.which("node") else None


def _run(cmd: list[str], cwd: Path) -> None:
    _log(f"$ {' '.join(cmd)}  (in {cwd.name}/)")
    subprocess.run(cmd, cwd=cwd, check=True)


def build_js(root: Path, *, force: bool = False) -> str:
    """Build the bundle if needed; returns what happened (``"built"``, ``"fresh"``, ``"prebuilt"``)."""
    js = root / "js"
    state = bundle_state(root)
    if state == "fresh" and not force:
        return "fresh"
    if os.environ.get("QSCOPE_SKIP_JS") == "1":
        if state == "missing":
            raise RuntimeError("QSCOPE_SKIP_JS=1 but the front end is not built "
                               f"({', '.join(BUNDLE)} missing): run `cd js && npm ci && npm run build`")
        _log("QSCOPE_SKIP_JS=1: using the existing bundle")
        return "prebuilt"
    if not (js / "package.json").exists():
        # an sdist or checkout without js/: only a prebuilt bundle can help
        if state == "missing":
            raise RuntimeError(f"the front end bundle ({', '.join(BUNDLE)}) is missing and there is no js/ folder to "
                               "build it from")
        return "prebuilt"
    npm = _npm()
    if npm is None:
        if state == "missing":
            raise RuntimeError(
                "qscope-widgets: building the widget front end needs Node.js (>= 20) and npm, and no prebuilt "
                f"bundle ({', '.join(BUNDLE)}) exists either.\n"
                "  Install Node.js (e.g. `apt-get install -y nodejs npm`, or https://nodejs.org) and reinstall, or run "
                "`bash scripts/install.sh`; or install a released wheel, which ships the bundle.")
        _log("WARNING: node/npm not found; shipping the existing bundle, which is older than js/src"
             if state == "stale" else "node/npm not found; shipping the existing bundle")
        return "prebuilt"
    try:
        if not (js / "node_modules").is_dir():
            _run([npm, "ci", "--no-audit", "--no-fund"], js)
        _run([npm, "run", "build"], js)
    except (subprocess.CalledProcessError, OSError) as exc:
        if state == "missing":
            raise RuntimeError(f"qscope-widgets: the JS build failed ({exc}); see the npm output above. "
                               "Fix it, or run `cd js && npm ci && npm run build` by hand.") from exc
        _log(f"WARNING: the JS build failed ({exc}); shipping the existing, older bundle")
        return "prebuilt"
    if bundle_state(root) == "missing":
        raise RuntimeError(f"qscope-widgets: `npm run build` finished but {', '.join(BUNDLE)} are not there")
    return "built"


class JSBuildHook(BuildHookInterface):
    """Builds the esbuild bundle before a wheel / editable / sdist build and ships it as an artifact."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        what = build_js(root)
        _log(f"front end {what} for {self.target_name} ({version})")
        build_data.setdefault("artifacts", []).extend(BUNDLE)
