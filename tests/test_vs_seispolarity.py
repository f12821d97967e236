"""benchmarks/vs_seispolarity.py without SeisPolarity 0.1.4's venv: a skip message that says how to
create it, and exit status 0 (the side-by-side run itself is a benchmark, not a test)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_vs_seispolarity_skips_without_their_venv(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "vs_seispolarity.py"),
                           "--theirs-python", str(tmp_path / "missing" / "python")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "SKIPPED" in proc.stdout
    assert "python -m venv /tmp/sp014 && /tmp/sp014/bin/pip install seispolarity==0.1.4 torch==2.13.0" in proc.stdout
