"""One-off check of the SeisPolarity 0.1.4 importer against the real 0.1.4 package.

    python benchmarks/check_seispolarity014_import.py [--theirs-python /tmp/sp014/bin/python] [--seed 0]

0.1.4 runs in a virtualenv of its own (its package is also called ``seispolarity``), in an isolated
subprocess (``python -I``, in a temporary folder): it builds each of its models with random weights
(``torch.manual_seed``), saves ``torch.save(model.state_dict())``, and writes its eval-mode
probabilities on random, peak-normalised windows of the model's length. Ours imports each file with
``python -m seispolarity.pretrained import seispolarity-0.1.4 ... --model <name>`` and runs
``Predictor`` on the same windows; the script prints the largest absolute difference of the class
probabilities per model. How 0.1.4's outputs are read as probabilities (Up, Down[, Unknown]):

- ``ross`` (``SCSN``): softmax of the logits; ``ppnet`` (``PPNet``): its second output, which is
  already a softmax (0.1.4's ``Predictor`` applies another softmax to it, which keeps the argmax but
  flattens the probabilities; ours does not);
- ``cfm`` and ``eqpolarity-1`` (the classes' one output ``z``): ``[1 - sigmoid(z), sigmoid(z)]``, as
  0.1.4 trains them (BCE on label 1 = down) and as its ``Predictor`` means to read them;
- ``eqpolarity-2``: ``EQPolarityCCT`` with ``output_layer = nn.Linear(in_features, 2)``, as its
  published EQPOLARITY_* training scripts build it: softmax.

- ``polarcap``: its second output, already a softmax (its classifier ends in ``nn.Softmax``); ours is
  imported as ``PolarCAP(padding="symmetric")``;
- ``rpnet``: softmax of the logits; ours is ``RPNet(branch_relu=False, attention_residual=False)``;
- ``diting_motion``: 0.1.4 is fed its own two-channel input as its training scripts build it (demean,
  divide by the standard deviation, then ``DifferentialFeatures``: the sign of ``x[i] - x[i-1]``, a 0
  first) and read from its fuse head (softmax), as its ``Predictor`` does; ours takes the one-channel
  window and is imported as ``DiTingMotion(readout="fuse", difference="backward", scale="std")``.

A model the importer refused would be listed with its reason and fail the check.

Needs the 0.1.4 venv: ``python3 -m venv /tmp/sp014 && /tmp/sp014/bin/pip install torch==2.13.0 &&
/tmp/sp014/bin/pip install seispolarity==0.1.4``. Without it the script says so and exits 0. Results:
docs/pretrained.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

DEFAULT_THEIRS = "/tmp/sp014/bin/python"

#: The 0.1.4 side, run with ``<theirs-python> -I -c THEIRS '<json args>'`` in the temporary folder.
THEIRS = r'''
import json, sys
import numpy as np, torch
from torch import nn
from seispolarity.models import CFM, SCSN, DitingMotion, EQPolarityCCT, PolarCAP, PPNet, RPNet
args = json.loads(sys.argv[1])
seed, n, out = args["seed"], args["n"], args["tmp"]
torch.set_num_threads(args["threads"])

def windows(length, k):
    g = np.random.default_rng(seed + k)
    x = g.normal(0, 1, (n, length)).cumsum(axis=1)
    return (x / np.abs(x).max(axis=1, keepdims=True)).astype(np.float32)

def two_class(z):  # one output z, sigmoid(z) = P(label 1 = down)
    s = torch.sigmoid(z)
    return torch.cat([1 - s, s], dim=1)

def eq2():
    m = EQPolarityCCT(input_length=600)
    m.output_layer = nn.Linear(m.output_layer.in_features, 2)
    return m

models = {  # name: (constructor, window, outputs -> probabilities)
    "ross": (lambda: SCSN(num_fm_classes=3), 400, lambda o: torch.softmax(o, 1)),
    # its second output is already softmax(logits) (its out2_activation); 0.1.4's Predictor applies a
    # second softmax on top (same argmax, flattened probabilities): the model's own output is compared
    "ppnet": (lambda: PPNet(input_len=400, input_channels=1, num_classes=3), 400, lambda o: o[1]),
    "cfm": (lambda: CFM(sample_rate=100.0), 160, two_class),
    "eqpolarity-1": (lambda: EQPolarityCCT(input_length=600), 600, two_class),
    "eqpolarity-2": (eq2, 600, lambda o: torch.softmax(o, 1)),
    "polarcap": (lambda: PolarCAP(drop_rate=0.3), 64, lambda o: o[1]),
    "rpnet": (lambda: RPNet(sample_rate=100.0), 400, lambda o: torch.softmax(o, 1)),
    "diting_motion": (lambda: DitingMotion(input_channels=2), 128, None),
}
report = {}
for k, (name, (make, length, read)) in enumerate(models.items()):
    torch.manual_seed(seed + k)
    model = make().eval()
    for mod in model.modules():  # random BatchNorm statistics, so that they are mapped too
        if isinstance(mod, nn.BatchNorm1d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
    x = windows(length, k)
    torch.save(model.state_dict(), f"{out}/{name}.pth")
    np.save(f"{out}/{name}_x.npy", x)
    with torch.no_grad():
        if name == "diting_motion":
            # 0.1.4's DiTingMotion input (its training scripts): demean, std-normalise, then
            # DifferentialFeatures: the sign of x[i] - x[i-1], a 0 first
            xd = x - x.mean(axis=1, keepdims=True)
            xd = xd / xd.std(axis=1, keepdims=True)
            diff = np.sign(np.diff(xd, axis=1, prepend=xd[:, :1]))
            x2 = np.stack([xd, diff], axis=1).astype(np.float32)
            np.save(f"{out}/{name}_x2.npy", x2)
            heads = model(torch.from_numpy(x2))
            np.save(f"{out}/{name}_heads.npy", torch.stack(heads[:4]).numpy())
            probs = torch.softmax(heads[3], 1)  # its Predictor: the fuse output
        else:
            probs = read(model(torch.from_numpy(x)[:, None]))
    np.save(f"{out}/{name}_p.npy", probs.numpy())
    report[name] = {"parameters": sum(p.numel() for p in model.parameters()), "length": length}
print(json.dumps(report))
'''


def theirs_available(python: str) -> tuple[bool, str]:
    try:
        proc = subprocess.run([python, "-I", "-c", "import importlib.metadata as m; print(m.version('seispolarity'))"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    version = proc.stdout.strip()
    return proc.returncode == 0 and version == "0.1.4", version or proc.stderr.strip()[-200:]


def _ours_predict(ckpt: Path, x: np.ndarray) -> np.ndarray:
    from seispolarity.inference import Predictor

    return Predictor(ckpt, device="cpu").predict(x).probabilities.astype(np.float64)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--theirs-python", default=DEFAULT_THEIRS, help="python of a venv with seispolarity==0.1.4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=64, help="random windows per model")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    ok, what = theirs_available(args.theirs_python)
    if not ok:
        print(f"no SeisPolarity 0.1.4 at {args.theirs_python} ({what}): create it with python3 -m venv /tmp/sp014 && "
              f"/tmp/sp014/bin/pip install torch==2.13.0 && /tmp/sp014/bin/pip install seispolarity==0.1.4, "
              f"then run again (or pass --theirs-python PATH).")
        return 0
    torch.set_num_threads(args.threads)
    from seispolarity.pretrained.seispolarity014 import import_seispolarity014

    with tempfile.TemporaryDirectory() as tmp:
        payload = {"seed": args.seed, "n": args.n, "tmp": tmp, "threads": args.threads}
        proc = subprocess.run([args.theirs_python, "-I", "-c", THEIRS, json.dumps(payload)], capture_output=True,
                              text=True, timeout=1800, cwd=tmp, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        tmpd = Path(tmp)
        rows, worst = [], 0.0
        for name, info in report.items():
            x = np.load(tmpd / f"{name}_x.npy")
            theirs = np.load(tmpd / f"{name}_p.npy").astype(np.float64)
            src = tmpd / f"{name}.pth"
            model = name.split("-")[0]
            try:
                import_seispolarity014(src, tmpd / f"{name}.ckpt", model)
            except ValueError as exc:
                rows.append((name, info["parameters"], None, "refused", str(exc)))
                worst = float("inf")
                continue
            diff = float(np.abs(_ours_predict(tmpd / f"{name}.ckpt", x) - theirs).max())
            worst = max(worst, diff)
            rows.append((name, info["parameters"], diff, "imported", ""))
    print(f"SeisPolarity 0.1.4 ({args.theirs_python}) -> ours; {args.n} random peak-normalised windows per model, "
          f"eval mode, torch {torch.__version__}, seed {args.seed}\n")
    print("| 0.1.4 model | parameters | max abs diff of probabilities | |")
    print("|---|---:|---:|---|")
    for name, params, diff, note, _ in rows:
        print(f"| {name} | {params:,} | {'' if diff is None else f'{diff:.1e}'} | {note} |")
    for name, _, _, _, refusal in rows:
        if refusal:
            print(f"\n{name}: {refusal}")
    bad = worst > 1e-5
    print(f"\n{'FAIL' if bad else 'ok'}: largest difference of an imported model {worst:.1e} (limit 1e-5)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
