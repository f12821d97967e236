"""``python -m seispolarity.pretrained``: list, package, verify and import weights.

    python -m seispolarity.pretrained list
    python -m seispolarity.pretrained package <run>/checkpoints/best.ckpt --name ppnet-synthetic \\
        --command "python train.py experiment=pretrain_ppnet" [--real-metrics '{"toc2me": 0.91}'] [--out-dir DIR]
    python -m seispolarity.pretrained verify [NAME ...]
    python -m seispolarity.pretrained import cfm-keras CFM.hdf5 [MORE.hdf5 ...] out.ckpt
    python -m seispolarity.pretrained import seispolarity-0.1.4 model.pth out.ckpt --model NAME (seispolarity014.MODELS)

Exit status: 0, 1 for bad input (one ``error:`` line naming the file), 2 for a command line that
cannot run.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m seispolarity.pretrained",
                                     description="Packaged pretrained weights and importers of published weights.")
    sub = parser.add_subparsers(dest="command_name", required=True, metavar="command")
    sub.add_parser("list", help="the packaged models and their descriptions")
    pack = sub.add_parser("package", help="ship a trained checkpoint inside the package (float16 + model card)")
    pack.add_argument("checkpoint", help="a checkpoint written by the Trainer, e.g. <run>/checkpoints/best.ckpt")
    pack.add_argument("--name", required=True, help="the packaged name (pretrained:<name>), e.g. ppnet-synthetic")
    pack.add_argument("--command", required=True, help="the command that reproduces the weights (for the card)")
    pack.add_argument("--real-metrics", default=None,
                      help="real-record metrics for the card: JSON ('{\"toc2me\": 0.91}') or a JSON file")
    pack.add_argument("--description", default=None, help="one line for available() (default: generated)")
    pack.add_argument("--out-dir", default=None, help="where to write <name>.pt and <name>.json (default: the package)")
    pack.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    verify = sub.add_parser("verify", help="check packaged files: sha256 and the check set's accuracy")
    verify.add_argument("names", nargs="*", help="default: every packaged model")
    verify.add_argument("--dir", default=None, help="a folder of packaged files (default: the package)")
    imp = sub.add_parser("import", help="convert published weights into a SeisPolarity checkpoint")
    imp.add_argument("format", choices=("cfm-keras", "seispolarity-0.1.4"))
    imp.add_argument("files", nargs="+", help="input file(s), then the output checkpoint")
    imp.add_argument("--model", default=None, help=f"seispolarity-0.1.4: one of {', '.join(_models_014())}")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)  # a bad command line: argparse's message, exit 2
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(message)s")
    from ..training.checkpoint import CheckpointError

    try:
        return {"list": _list, "package": _package, "verify": _verify, "import": _import}[args.command_name](args)
    except (ValueError, OSError, KeyError, CheckpointError) as exc:
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {(text.strip().splitlines() or [type(exc).__name__])[0][:500]}", file=sys.stderr, flush=True)
        return 1


def _list(args) -> int:
    from . import available

    models = available()
    if not models:
        print("no packaged weights in this installation (python -m seispolarity.pretrained package ...)")
    for name, description in models.items():
        print(f"{name}: {description}")
    return 0


def _real_metrics(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    path = Path(text)
    raw = path.read_text() if not text.lstrip().startswith("{") and path.is_file() else text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--real-metrics {text!r}: not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"--real-metrics {text!r}: expected a JSON object, e.g. '{{\"toc2me\": 0.91}}'")
    return value


def _package(args) -> int:
    from .package import package

    card = package(args.checkpoint, args.name, args.command, real_metrics=_real_metrics(args.real_metrics),
                   out_dir=args.out_dir, description=args.description, dtype=args.dtype)
    folder = Path(args.out_dir) if args.out_dir else Path(__file__).resolve().parent
    check = card["check_set"]
    print(f"wrote {folder / card['file']} ({card['bytes']:,} bytes, {card['dtype']}, sha256 {card['sha256'][:16]}...) "
          f"and {folder / (args.name + '.json')}")
    print(f"check set (synthesise({check['num_traces']}, seed={check['seed']})): accuracy {check['accuracy']:.4f}, "
          f"up/down accuracy {check['updown_accuracy']:.4f}; max |p({card['dtype']}) - p(float32)| "
          f"{check['max_probability_difference_vs_float32']:.1e}")
    return 0


def verify(name: str, folder: str | None = None) -> list[str]:
    """What is wrong with packaged ``name`` (empty when nothing): the file loads with
    ``weights_only=True``, matches its card's sha256 and reproduces the card's check-set accuracy
    (within 2 traces: floating-point sums differ between CPUs)."""
    import torch

    from ..data.synthetic import GENERATOR_VERSION
    from . import card as read_card
    from . import sha256, weights_path
    from .package import check_set_scores

    problems = []
    path = weights_path(name, folder)
    info = read_card(name, folder)
    torch.load(path, map_location="cpu", weights_only=True)
    if sha256(path) != info.get("sha256"):
        problems.append(f"{path}: sha256 {sha256(path)} differs from its card's {info.get('sha256')}")
    check = info["check_set"]
    if int(check.get("generator_version", -1)) != int(GENERATOR_VERSION):
        problems.append(f"{name}: its check set was generated by recipe version {check.get('generator_version')}, "
                        f"this installation's synthetic generator is version {GENERATOR_VERSION}; re-package it")
        return problems
    scores = check_set_scores(str(path), check)
    if scores["scored"] != check["scored"] or abs(scores["correct"] - check["correct"]) > 2:
        problems.append(f"{name}: check set accuracy {scores['accuracy']:.4f} ({scores['correct']} of "
                        f"{scores['scored']}), its card says {check['accuracy']:.4f} ({check['correct']} of "
                        f"{check['scored']})")
    return problems


def _verify(args) -> int:
    from . import available

    names = args.names or list(available(args.dir))
    if not names:
        print("no packaged weights to verify")
        return 0
    failed = 0
    for name in names:
        problems = verify(name, args.dir)
        failed += bool(problems)
        print(f"{name}: " + ("ok (sha256 and check-set accuracy match its card)" if not problems
                             else "; ".join(problems)))
    return 1 if failed else 0


def _import(args) -> int:
    if len(args.files) < 2:
        raise SystemExit(_usage(f"import {args.format} needs input file(s) and the output checkpoint"))
    *inputs, out = args.files
    if args.format == "cfm-keras":
        from .keras_cfm import import_cfm_keras

        if args.model not in (None, "cfm"):
            raise SystemExit(_usage("import cfm-keras: --model is for seispolarity-0.1.4"))
        state = import_cfm_keras(inputs, out)
    else:
        from .seispolarity014 import import_seispolarity014

        if len(inputs) != 1 or not args.model:
            raise SystemExit(_usage("import seispolarity-0.1.4 takes one .pth, the output and "
                                    f"--model {'|'.join(_models_014())}"))
        state = import_seispolarity014(inputs[0], out, args.model)
    model = state["model"]
    print(f"wrote {out}: {model['name']} ({model['parameters']:,} parameters, {model['input_length']} samples, "
          f"normalize={state['data']['normalize']}); predict with python -m seispolarity.predict ckpt={out} data=...")
    return 0


def _models_014() -> tuple[str, ...]:
    """The models the 0.1.4 importer maps (its MODELS: the one list, so usage and help follow it)."""
    from .seispolarity014 import MODELS

    return MODELS


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
