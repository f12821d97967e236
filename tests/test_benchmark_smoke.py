"""The throughput benchmark runs end to end with tiny options and prints every row of its table.

No timing is asserted anywhere: the numbers depend on the machine and on whoever else uses it.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

#: Row labels the printed table must hold, one per measurement.
LABELS = ("limit:", "trainer:", "docs loop:", "data path, preloaded", "streaming", "0 workers", "1 workers", "2 workers",
          "host syncs per training step", "start-up:", "preload peak memory")


def test_benchmark_prints_every_row(tmp_path, capsys):
    sys.path.insert(0, str(BENCHMARKS))
    threads = torch.get_num_threads()
    try:
        import throughput

        out = tmp_path / "bench.json"
        # In this process (the start-up and memory rows still run in fresh interpreters).
        code = throughput.main([
            "--model", "ross", "--batch-size", "16", "--num-traces", "160", "--base-traces", "240",
            "--stream-traces", "720", "--steps", "1", "--repeats", "1", "--stream-repeats", "1",
            "--startup-repeats", "1", "--threads", "1", "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache"), "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
        sys.path.remove(str(BENCHMARKS))
    assert code == 0
    table = capsys.readouterr().out
    for label in LABELS:
        assert label in table, f"row {label!r} missing from:\n{table}"
    assert "command: python" in table and "CPUs" in table  # the machine and the command are recorded

    results = json.loads(out.read_text())
    assert set(throughput.ROWS) <= set(results["rows"])
    for key in ("limit", "trainer", "docs_loop", "data_preloaded", "data_streaming_w0", "data_streaming_w1", "data_streaming_w2"):
        value = results["rows"][key]["samples_per_s"]
        assert math.isfinite(value) and value > 0, (key, value)
    for key in ("over_limit", "over_docs"):
        assert math.isfinite(results["rows"]["trainer"][key])
    assert results["stream_traces"] == 720 and results["num_traces"] == 160
    memory = results["rows"]["preload_memory"]
    assert memory["traces"] == 720 and memory["window_bytes"] == 720 * (400 + 2 * 5) * 4
    assert math.isfinite(results["rows"]["startup"]["overhead_s"])
    syncs = results["rows"]["syncs"]  # on the CPU: the training code's host reads, each a sync on CUDA
    assert syncs["per_step"] == 0 and syncs["epoch_n"] > 0 and "CPU proxy" in syncs["counted"], syncs


@pytest.mark.slow  # 25 s of fresh start-up probes; `make test-slow`
def test_compare_trees_runs_a_checkout_against_itself(tmp_path):
    """benchmarks/compare_trees.py (before / after in alternating processes), its start-up row with
    this checkout on both sides: it runs, prints the row and writes a ratio near 1."""
    import subprocess

    out = tmp_path / "cmp.json"
    p = subprocess.run([sys.executable, str(BENCHMARKS / "compare_trees.py"), str(ROOT), "--pairs", "1",
                        "--rows", "startup", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| startup |" in p.stdout, p.stdout
    row = json.loads(out.read_text())["rows"]["startup"]
    assert 0 < row["now"] < 60 and 0 < row["base"] < 60 and 0.2 < row["ratio"] < 5, row
    bad = subprocess.run([sys.executable, str(BENCHMARKS / "compare_trees.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip() == f"error: {tmp_path}: not a checkout of this project (no train.py)"
