"""benchmarks/sim2real.py: train on synthetic only, score other files, first-break picker beside it."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from seispolarity.data.synthetic import generate_synthetic

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("sim2real", ROOT / "benchmarks" / "sim2real.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sim2real_scores_each_file_beside_the_picker(tmp_path, capsys):
    # A "real" file: another synthetic draw (other seed, no echoes) in the flat layout.
    other = generate_synthetic(tmp_path / "other.hdf5", num_traces=200, seed=99, echo_fraction=0.0)
    out = tmp_path / "result.json"
    script = _load_script()
    code = script.main([str(other), "--layout", "flat", "--model", "polarcap", "--traces", "400", "--epochs", "1",
                        "--batch-size", "64", "--cache-dir", str(tmp_path / "cache"), "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["model"] == "polarcap" and 0.0 <= row["other"] <= 1.0
    accuracy, traces = result["baselines"]["other"]
    assert 0.5 < accuracy <= 1.0 and traces > 50  # the picker reads clean synthetic onsets well
    table = capsys.readouterr().out
    assert "| first-break picker |" in table and "| polarcap |" in table
