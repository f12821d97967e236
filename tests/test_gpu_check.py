"""Smoke test of benchmarks/gpu_check.sh on the CPU path with a tiny budget (seconds): it writes
the JSON and the markdown table, every CUDA row marked "skipped: no CUDA", the cpu rows run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_path_tiny(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_TINY="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--no-cuda",
                           "--out-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    assert result["tiny"] and not result["cuda"]
    rows = result["rows"]
    cuda_rows = [r for r in rows if r["device"] == "cuda"]
    cpu_rows = [r for r in rows if r["device"] == "cpu"]
    # every check the issue names is planned: train (fp32/bf16/fp16 x 256/1024 x Ross/PPNet), compile,
    # syncs, data, ddp
    kinds = {(r["row"], r["model"], r["batch"], r["amp"], r["compile"]) for r in cuda_rows}
    for model in ("ross", "ppnet"):
        for batch in (256, 1024):
            for amp in (False, "bf16", "fp16"):
                assert ("train", model, batch, amp, False) in kinds
        assert ("compile", model, 256, "bf16", True) in kinds
        assert ("syncs", model, 256, "bf16", False) in kinds
    assert {r["row"] for r in cuda_rows} >= {"train", "compile", "syncs", "data", "ddp"}
    assert all(r["status"] == "skipped: no CUDA" for r in cuda_rows)
    assert {r["row"] for r in cpu_rows} == {"train", "data"} and all(r["status"] == "ok" for r in cpu_rows)
    train = next(r for r in cpu_rows if r["row"] == "train")
    assert train["limit_per_s"] > 0 and train["trainer_per_s"] > 0 and train["trainer_over_limit"] > 0
    assert next(r for r in cpu_rows if r["row"] == "data")["data_per_s"] > 0
    assert table.count("skipped: no CUDA") >= len(cuda_rows)
    assert "| train (cpu) | ross |" in table and "| ddp | ross |" in table
