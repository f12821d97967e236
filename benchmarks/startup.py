"""Start-up benchmark: what ``python train.py`` spends before its first epoch, beyond importing torch and Hydra.

    python benchmarks/startup.py [--repeats 5] [--num-traces 2000] [--model ppnet] [--json out.json]
                                 [-- extra train.py overrides]

Each repeat starts fresh interpreters (probes), one per variant, interleaved:

- ``baseline``: the imports any torch + Hydra script pays (``torch``, ``hydra``, ``omegaconf``) and
  ``torch._dynamo``, which torch itself imports when the first ``torch.optim`` optimizer is built;
- ``train.py``: the baseline, then ``train.py <overrides>`` run as ``python train.py`` runs it, stopped
  when the first epoch would start (``Trainer.run_epoch`` replaced by a stop in that process);
- ``train.py, Hydra composing twice``: the same with ``launch.compose_once`` turned off, i.e. Hydra's
  own path, which composes the whole config once to read ``hydra.mode`` and again to run it;
- ``Hydra alone``: the floor under any ``@hydra.main`` script: an empty config (one composition and
  libyaml's parser, as train.py does) until its task function starts: Hydra's own config, run
  folder and logging.

The figure is a probe's time from the end of the baseline imports to the first epoch (median over the
repeats), and the processor time the probe used over it (``time.process_time``; close to the wall
time, as start-up is one thread). It covers composing the config, the run
folder, seispolarity's imports, the model, the data (a cached synthetic set of ``--num-traces``; made
once before the timed probes), ``TrainingConfig`` and the Trainer. Its parts: Hydra's compositions
(count, seconds), whether TensorBoard was imported before the first epoch, and the line of parts
(``parts_line``: seispolarity's imports + ``register_configs``, compose + run folder + logging + the
Preflight checks, model, data, Trainer). The baseline's own seconds are printed beside it.
``benchmarks/throughput.py``'s start-up row runs the same probe (``run_probe("once", ...)``).
Probes run with Python's bytecode cache on (``PYTHONDONTWRITEBYTECODE`` is dropped for them), as an
installed package runs. Nothing here is a test: it reports.
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
VARIANTS = ("once", "twice")  # train.py; "floor" (Hydra alone) is timed beside them
#: The parts of a probe's start-up (seconds; see ``probe``), printed in this order.
PARTS = ("register_s", "compose_s", "compose_run_folder_s", "preflight_s", "model_s", "data_s", "trainer_s",
         "tensorboard_s")
LABELS = {"once": "train.py (one composition)", "twice": "train.py, Hydra composing twice"}


# ----------------------------------------------------------------------------------------------
# The probe (a fresh interpreter). benchmarks/throughput.py's start-up row runs this one too.


def probe(variant: str, overrides: list[str]) -> dict:
    """``python train.py <overrides>`` (``variant`` "once" or "twice"), stopped when the first epoch
    would start, timed from the end of the baseline imports; ``variant`` "baseline": those imports only.

    Seconds returned: ``baseline_s`` (``import_torch_hydra_s`` + ``import_dynamo_s``), ``startup_s``
    (and ``startup_cpu_s``), Hydra's compositions (``compose_calls``, ``compose_s``), the parts in
    the order train.py meets them (``register_s``: seispolarity's imports + ``register_configs``;
    ``compose_run_folder_s``: composing, the run folder, logging and the Preflight checks, of which
    ``preflight_s``; ``model_s``; ``data_s``; ``trainer_s``: ``TrainingConfig`` and the Trainer until
    the first epoch) and ``tensorboard_s`` (``ScalarLog.open`` before the first epoch), with
    ``tensorboard_imported``.
    """
    t0 = time.perf_counter()
    import hydra  # noqa: F401
    import omegaconf  # noqa: F401
    import torch  # noqa: F401

    t_torch = time.perf_counter()
    import torch._dynamo  # noqa: F401

    t1, c1 = time.perf_counter(), time.process_time()
    imports = {"baseline_s": t1 - t0, "baseline_cpu_s": c1, "import_torch_hydra_s": t_torch - t0,
               "import_dynamo_s": t1 - t_torch}
    if variant == "baseline":
        return imports
    if variant == "floor":
        return {**imports, **hydra_floor(t1, c1, overrides)}
    import runpy

    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    import seispolarity.config as sconfig
    import seispolarity.runner as runner
    from seispolarity import launch, preflight
    from seispolarity.training import Trainer, tracking

    if variant == "twice":
        launch.compose_once = lambda: None  # install_startup_changes looks the name up in launch
    marks: dict[str, float] = {}
    spent: dict[str, float] = {}

    def timed(owner, name: str, key: str) -> None:
        """``owner.name`` wrapped: its first start, its last end and its seconds and calls summed."""
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            start = time.perf_counter()
            marks.setdefault(key + "_start", start)
            try:
                return original(*args, **kwargs)
            finally:  # a composition compose_once hands on again is not counted
                marks[key + "_end"] = end = time.perf_counter()
                spent[key] = spent.get(key, 0.0) + end - start
                spent[key + "_calls"] = spent.get(key + "_calls", 0) + 1

        setattr(owner, name, wrapped)

    timed(ConfigLoaderImpl, "load_configuration", "compose")  # compose_once (train.py) wraps this in turn
    timed(sconfig, "register_configs", "register")
    timed(runner, "build_model", "model")
    timed(runner, "build_datasets", "data")
    timed(preflight.Preflight, "on_run_start", "preflight")
    timed(tracking.ScalarLog, "open", "tensorboard")
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
    t = ready["t"]
    registered = marks.get("register_end", t1)
    return {**imports, "startup_s": t - t1, "startup_cpu_s": ready["cpu"] - c1,
            "compose_calls": spent.get("compose_calls", 0), "compose_s": spent.get("compose", 0.0),
            "register_s": registered - t1, "compose_run_folder_s": marks["model_start"] - registered,
            "preflight_s": spent.get("preflight", 0.0), "model_s": marks["model_end"] - marks["model_start"],
            "data_s": marks["data_end"] - marks["data_start"], "trainer_s": t - marks["data_end"],
            "tensorboard_s": spent.get("tensorboard", 0.0), "tensorboard_imported": ready["tensorboard"]}


def hydra_floor(t1: float, c1: float, overrides: list[str]) -> dict:
    """An empty config through ``@hydra.main``, composed once as train.py composes, timed from the end
    of the baseline imports (``t1``, ``c1``) to its task function: what no script on Hydra avoids."""
    import hydra

    from seispolarity import launch

    conf = tempfile.mkdtemp(prefix="seispolarity-floor-")
    with open(os.path.join(conf, "empty.yaml"), "w") as fh:
        fh.write("{}\n")
    reached: dict = {}

    @hydra.main(version_base="1.3", config_path=conf, config_name="empty")
    def task(cfg) -> None:
        reached["t"], reached["cpu"] = time.perf_counter(), time.process_time()

    run_dir = next((o for o in overrides if o.startswith("hydra.run.dir=")), f"hydra.run.dir={conf}/run")
    sys.argv = [os.path.join(conf, "floor.py"), run_dir]
    launch.install_startup_changes()
    task()
    return {"startup_s": reached["t"] - t1, "startup_cpu_s": reached["cpu"] - c1}


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
        kinds = ("baseline", *VARIANTS, "floor")
        probes: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for i in range(repeats):
            for variant in kinds[i % len(kinds):] + kinds[:i % len(kinds)]:
                probes[variant].append(run_probe(variant, overrides(f"{variant}{i}")))
        command = "python train.py " + " ".join(overrides("x")[:-1])
    return {"command": command, "probes": probes, "summary": summarize(probes)}


def summarize(probes: dict[str, list[dict]]) -> dict:
    def med(variant: str, key: str) -> float:
        return statistics.median(p[key] for p in probes[variant])

    out = {"baseline_s": med("baseline", "baseline_s"), "baseline_cpu_s": med("baseline", "baseline_cpu_s"),
           "floor_s": med("floor", "startup_s"), "floor_cpu_s": med("floor", "startup_cpu_s")}
    for variant in VARIANTS:
        out[variant] = {"startup_s": med(variant, "startup_s"), "startup_cpu_s": med(variant, "startup_cpu_s"),
                        "spread_s": [min(p["startup_s"] for p in probes[variant]),
                                     max(p["startup_s"] for p in probes[variant])],
                        "compose_calls": med(variant, "compose_calls"), "compose_s": med(variant, "compose_s"),
                        "tensorboard_imported": any(p["tensorboard_imported"] for p in probes[variant]),
                        "parts": {key: med(variant, key) for key in PARTS}}
    return out


def parts_line(parts: dict) -> str:
    """The parts of a start-up (medians), as throughput.py prints them too."""
    return (f"start-up parts (s, median): seispolarity's imports + register_configs {parts['register_s']:.2f}, "
            f"compose + run folder + logging + checks {parts['compose_run_folder_s']:.2f} (Hydra's compositions "
            f"{parts['compose_s']:.2f}, Preflight checks {parts['preflight_s']:.2f}), model {parts['model_s']:.2f}, "
            f"data {parts['data_s']:.2f}, Trainer until the first epoch {parts['trainer_s']:.2f} (TensorBoard "
            f"writer opened: {parts['tensorboard_s']:.2f})")


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
        f"Hydra alone (an empty config through @hydra.main, one composition, to its task function), same run: "
        f"{s['floor_s']:.2f} s (median; CPU {s['floor_cpu_s']:.2f} s)", parts_line(s["once"]["parts"]),
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
    ap.add_argument("--probe", choices=("baseline", *VARIANTS, "floor"), help=argparse.SUPPRESS)
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
