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

For the models the importer refuses (``polarcap``, ``rpnet``, ``diting_motion``) the script checks the
refusal and, to show it is needed, loads the 0.1.4 weights into ours by the obvious key renaming and
prints how far the outputs then are (for DiTingMotion also the four polarity heads fed 0.1.4's own
two-channel input, which agree, and the readout: 0.1.4's fuse head against our mean of the four).

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


def _naive(model: torch.nn.Module, state: dict, rules: list[tuple[str, str]]) -> torch.nn.Module:
    """Load 0.1.4's weights into ours by renaming keys (prefix rules, first match); strict."""
    mapped = {}
    for key, value in state.items():
        for old, new in rules:
            if key.startswith(old):
                mapped[new + key[len(old):]] = value
                break
        else:
            mapped[key] = value
    model.load_state_dict(mapped)
    return model.eval()


def naive_polarcap(state):
    from seispolarity.models import PolarCAP

    state = {k: v for k, v in state.items() if not k.startswith("decoder.")}  # the classification path only
    model = PolarCAP()
    model.dec1 = model.dec2 = model.dec3 = torch.nn.Identity()
    return _naive(model, state, [("encoder.0.", "encoder.0.1."), ("encoder.5.", "encoder.5.1.")])


def naive_rpnet(state):
    from seispolarity.models import RPNet

    rules = [("initial_conv.0.", "stem.0."), ("self_attention.", "attention."), ("fc1.", "fc.1."), ("fc2.", "out.")]
    for i in (1, 2):
        p, q = f"inception{i}.", f"inception.{i - 1}."
        rules += [(p + "branch1.", q + "b1.0."), (p + "branch2.0.", q + "b3.0."), (p + "branch2.1.", q + "b3.2."),
                  (p + "branch3.0.", q + "b5.0."), (p + "branch3.1.", q + "b5.2."), (p + "branch4.1.", q + "bp.1.")]
    return _naive(RPNet(attention_residual=False), state, rules)


def naive_diting(state):
    from seispolarity.models import DiTingMotion

    rules = []
    for s, (comb1, conv1, comb2, conv2) in enumerate([("b1_comb1", "b1_conv1", "b1_comb2", "b1_conv2")]
                                                      + [(f"block{b}.comb1", f"block{b}.fusion1", f"block{b}.comb2",
                                                          f"block{b}.fusion2") for b in range(2, 6)]):
        for j, comb in ((0, comb1), (4, comb2)):
            rules += [(f"{comb}.branch{b + 1}.", f"blocks.{s}.stages.{j}.branches.{b}.") for b in range(4)]
        rules += [(f"{conv1}.", f"blocks.{s}.stages.2."), (f"{conv2}.", f"blocks.{s}.stages.6.")]
    for i, b in enumerate((3, 4, 5)):
        rules += [(f"side{b}_conv.", f"side_convs.{i}."), (f"dense{b}_c.0.", f"clarity_sides.{i}.hidden.0."),
                  (f"out{b}_c.", f"clarity_sides.{i}.out."), (f"dense{b}.0.", f"polarity_sides.{i}.hidden.0."),
                  (f"out{b}.", f"polarity_sides.{i}.out.")]
    rules += [("fuse_dense_c.0.", "clarity_fuse.hidden.0."), ("out_fuse_c.", "clarity_fuse.out."),
              ("fuse_dense.0.", "polarity_fuse.hidden.0."), ("out_fuse.", "polarity_fuse.out.")]
    model = _naive(DiTingMotion(), state, rules)
    model.fit_input = model.two_channel_input = lambda x: x  # feed 0.1.4's own two-channel input
    return model


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
                refusal = str(exc).split(": not importable from 0.1.4: ")[-1].rsplit("; mapped models:", 1)[0]
                state = torch.load(src, weights_only=True)
                naive = {"polarcap": naive_polarcap, "rpnet": naive_rpnet, "diting_motion": naive_diting}[model](state)
                with torch.no_grad():
                    if model == "diting_motion":
                        x2 = torch.from_numpy(np.load(tmpd / f"{name}_x2.npy"))
                        pol, _ = naive._heads(x2)
                        heads = np.load(tmpd / f"{name}_heads.npy")
                        head_diff = max(float(np.abs(h.numpy() - t).max()) for h, t in zip(pol, heads))
                        ours = torch.softmax(naive.classify(x2), 1).double().numpy()
                        note = (f"refused; its layers by key renaming: the four polarity heads on 0.1.4's input "
                                f"differ by {head_diff:.1e}, our readout (mean of the four) against its fuse head "
                                f"by {np.abs(ours - theirs).max():.1e}")
                    else:
                        ours = torch.softmax(naive.classify(torch.from_numpy(x)[:, None]), 1).double().numpy()
                        diff = float(np.abs(ours - theirs).max())
                        note = f"refused; its weights in ours by key renaming differ by {diff:.1e}"
                rows.append((name, info["parameters"], None, note, refusal))
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
