"""The front end's unit tests (vitest + happy-dom, in js/test/) run as part of the Python test command."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parent.parent / "js"


def test_js_unit_tests_pass():
    if shutil.which("npm") is None or shutil.which("node") is None:
        if os.environ.get("QSCOPE_REQUIRE_BROWSER") == "1":  # CI sets it: there, no node is a failure
            pytest.fail("node/npm are not installed")
        pytest.skip("node/npm not installed")
    if not (JS / "node_modules").is_dir():
        ci = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, capture_output=True, text=True, timeout=300)
        assert ci.returncode == 0, f"npm ci failed:\n{ci.stdout}\n{ci.stderr}"
    run = subprocess.run(["npm", "test", "--silent"], cwd=JS, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "CI": "1", "NO_COLOR": "1", "FORCE_COLOR": "0"})
    out = f"{run.stdout}\n{run.stderr}"
    assert run.returncode == 0, f"npm test failed (exit {run.returncode}):\n{out[-20000:]}"
    assert "passed" in out and "failed" not in out.split("Test Files")[-1], out[-5000:]
