"""Start-up benchmark: what ``python train.py`` spends before its first epoch, beyond importing torch and Hydra.

    python benchmarks/startup.py [--repeats 5] [--num-traces 2000] [--model ppnet] [--json out.json]
                                 [-- extra train.py overrides]

Each repeat starts fresh interpreters (probes), one per variant, interleaved:

- ``baseline``: the imports any torch + Hydra script pays (``torch``, ``hydra``, ``omegaconf``) and
  ``torch._dynamo``, which torch itself imports when the first ``torch.optim`` optimizer is built;
- ``train.py``: the baseline, then ``train.py <overrides>`` run as ``python train.py`` runs it, stopped
  when the first epoch would start (``Trainer.run_epoch`` replaced by a stop in that process);
- ``train.py, Hydra composing twice``: the same with ``launch.compose_once`` turned off, i.e. Hydra's
  own path, which composes the whole config once to read ``hydra.mode`` and again to run it.

The figure is a probe's time from the end of the baseline imports to the first epoch (median over the
repeats), and the processor time the probe used over it (``time.process_time``; close to the wall
time, as start-up is one thread). It covers composing the config, the run
folder, seispolarity's imports, the model, the data (a cached synthetic set of ``--num-traces``; made
once before the timed probes), ``TrainingConfig`` and the Trainer. Its parts: Hydra's compositions
(count, seconds), whether TensorBoard was imported before the first epoch. The baseline's own seconds
are printed beside it. Probes run with Python's bytecode cache on (``PYTHONDONTWRITEBYTECODE`` is
dropped for them), as an installed package runs. Nothing here is a test: it reports.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_S = 0.5
VARIANTS = ("once", "twice")
LABELS = {"once": "train.py (one composition)", "twice": "train.py, Hydra composing twice"}


# ----------------------------------------------------------------------------------------------
# The probe (a fresh interpreter)


def probe(variant: str, overrides: list[str]) -> dict:
    t0 = time.perf_counter()
    import hydra  # noqa: F401
    import omegaconf  # noqa: F401
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401

    t1, c1 = time.perf_counter(), time.process_time()
    if variant == "baseline":
        return {"baseline_s": t1 - t0, "baseline_cpu_s": c1}
    import runpy

    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    from seispolarity import launch
    from seispolarity.training import Trainer

    if variant == "twice":
        launch.compose_once = lambda: None  # train.py imports the name from here
    compose = {"calls": 0, "s": 0.0}
    original = ConfigLoaderImpl.load_configuration

    def counted(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:  # a composition Hydra's compose_once hands on again is not counted
            compose["calls"] += 1
            compose["s"] += time.perf_counter() - start

    ConfigLoaderImpl.load_configuration = counted  # compose_once (train.py) wraps this in turn
    ready: dict = {}

    def first_epoch(self, *args, **kwargs):
        ready["t"], ready["cpu"] = time.perf_counter(), time.process_time()
        ready["tensorboard"] = "torch.utils.tensorboard" in sys.modules
        raise SystemExit(0)

    setattr(Trainer, "run_epoch" if hasattr(Trainer, "run_epoch") else "train", first_epoch)
    sys.argv = [os.path.join(ROOT, "train.py"), *overrides]
    try:
        runpy.run_path(os.path.join(ROOT, "train.py"), run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    if "t" not in ready:
        raise RuntimeError("train.py did not reach the first epoch")
    return {"baseline_s": t1 - t0, "startup_s": ready["t"] - t1, "startup_cpu_s": ready["cpu"] - c1,
            "compose_calls": compose["calls"],
            "compose_s": compose["s"], "tensorboard_imported": ready["tensorboard"]}


def run_probe(variant: str, overrides: list[str], timeout: float = 600) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # bytecode cached as for any installed package (the warm-up probe writes it); with
    # PYTHONDONTWRITEBYTECODE=1 every start would compile seispolarity's modules again (~0.1 s)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe", variant, "--", *overrides],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{variant} probe failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# The run


def measure(repeats: int, num_traces: int, model: str, cache_dir: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="seispolarity-startup-") as tmp:
        def overrides(tag: str) -> list[str]:
            return [f"model={model}", f"data.num_traces={num_traces}", "data.max_traces=null",
                    f"paths.cache_dir={cache_dir}", "test=false", "report=none", "trainer.show_progress=false",
                    "trainer.device=cpu", *extra, f"hydra.run.dir={tmp}/{tag}"]

        run_probe("once", overrides("warmup"))  # makes the cached synthetic set; not timed
        probes: dict[str, list[dict]] = {"baseline": [], **{v: [] for v in VARIANTS}}
        for i in range(repeats):
            for variant in ("baseline", *VARIANTS)[i % 3:] + ("baseline", *VARIANTS)[:i % 3]:
                probes[variant].append(run_probe(variant, overrides(f"{variant}{i}")))
        command = "python train.py " + " ".join(overrides("x")[:-1])
    return {"command": command, "probes": probes, "summary": summarize(probes)}


def summarize(probes: dict[str, list[dict]]) -> dict:
    def med(variant: str, key: str) -> float:
        return statistics.median(p[key] for p in probes[variant])

    out = {"baseline_s": med("baseline", "baseline_s"), "baseline_cpu_s": med("baseline", "baseline_cpu_s")}
    for variant in VARIANTS:
        out[variant] = {"startup_s": med(variant, "startup_s"), "startup_cpu_s": med(variant, "startup_cpu_s"),
                        "spread_s": [min(p["startup_s"] for p in probes[variant]),
                                     max(p["startup_s"] for p in probes[variant])],
                        "compose_calls": med(variant, "compose_calls"), "compose_s": med(variant, "compose_s"),
                        "tensorboard_imported": any(p["tensorboard_imported"] for p in probes[variant])}
    return out


def table(result: dict) -> str:
    s = result["summary"]
    rows = ["| row | beyond the imports (median) | spread | CPU time (median) | Hydra compositions (s) "
            "| TensorBoard imported | target | met |", "|---|---:|---:|---:|---|---|---|---|"]
    for variant in VARIANTS:
        r = s[variant]
        rows.append(f"| {LABELS[variant]} | {r['startup_s']:.2f} s | {r['spread_s'][0]:.2f} .. "
                    f"{r['spread_s'][1]:.2f} s | {r['startup_cpu_s']:.2f} s | "
                    f"{r['compose_calls']:g} ({r['compose_s']:.2f} s) | "
                    f"{'yes' if r['tensorboard_imported'] else 'no'} | < {TARGET_S} s | "
                    f"{'yes' if r['startup_s'] < TARGET_S else 'NO'} |")
    return "\n".join([
        f"command: {result['command']}", f"load average: {result.get('load')}", "",
        *rows, "",
        f"baseline (import torch, hydra, omegaconf, torch._dynamo), same run: {s['baseline_s']:.2f} s (median; "
        f"CPU {s['baseline_cpu_s']:.2f} s)",
        "CPU time: the probe's own processor time over the same span (start-up is one thread, so it is close "
        "to the wall time; a busy machine slows both)"])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--num-traces", type=int, default=2000, help="synthetic traces the run loads (cached)")
    ap.add_argument("--model", default="ppnet")
    ap.add_argument("--cache-dir", default=os.path.join(ROOT, "data", "cache", "benchmarks"))
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--probe", choices=("baseline", *VARIANTS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, extra)))
        return 0
    os.makedirs(args.cache_dir, exist_ok=True)
    load = [round(v, 2) for v in os.getloadavg()]
    result = measure(max(1, args.repeats), args.num_traces, args.model, os.path.abspath(args.cache_dir), extra)
    result["load"] = [load, [round(v, 2) for v in os.getloadavg()]]
    print(table(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
