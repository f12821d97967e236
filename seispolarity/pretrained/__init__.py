"""Weights that ship inside the package, and the tools that make and import checkpoints.

Each packaged model is two files in this folder:

- ``<name>.pt``: a SeisPolarity checkpoint (loads with ``torch.load(..., weights_only=True)``)
  holding the model description (registry name and constructor arguments), the weights as
  float16, and the preprocessing the weights expect (``data``: window length, normalisation,
  sampling rate; ``class_names``);
- ``<name>.json``: its model card: the command that reproduces it, the synthetic data recipe
  version, its synthetic test metrics and real-record metrics, the sha256 of ``<name>.pt``, and the
  seeded check set with the accuracy it reproduces.

API::

    import seispolarity.pretrained as pretrained
    pretrained.available()                  # {"ppnet-synthetic": "PPNet ... ", ...}
    model = pretrained.load("ppnet-synthetic")
    Predictor.from_pretrained("ppnet-synthetic")       # or Predictor("pretrained:ppnet-synthetic")

``pretrained:<name>`` is accepted wherever a checkpoint path is: ``python -m seispolarity.predict
ckpt=pretrained:<name>``, ``python train.py train=false ckpt_path=pretrained:<name>`` and
``init_from=pretrained:<name>`` (fine-tuning). The command line (``python -m seispolarity.pretrained``)
packages a trained checkpoint (``package``) and imports published weights (``import cfm-keras``,
``import seispolarity-0.1.4``); see docs/pretrained.md.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

#: the folder holding the packaged ``<name>.pt`` / ``<name>.json`` pairs
PACKAGE_DIR = Path(__file__).resolve().parent
#: the seeded synthetic set every card's accuracy is measured on (and the test reproduces)
CHECK_SET = {"function": "seispolarity.data.synthetic.synthesise", "num_traces": 2000, "seed": 12345,
             "p_index": "p_pick"}
NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def _names(folder: Path = PACKAGE_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.pt") if p.with_suffix(".json").is_file())


def available(folder: str | os.PathLike | None = None) -> dict[str, str]:
    """The packaged models: name -> one-line description (from each model card)."""
    root = Path(folder) if folder is not None else PACKAGE_DIR
    return {name: str(card(name, root).get("description", "")) for name in _names(root)}


def weights_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """``<name>.pt`` of a packaged model; a CheckpointError naming the packaged ones if there is none."""
    from ..training.checkpoint import CheckpointError

    root = Path(folder) if folder is not None else PACKAGE_DIR
    path = root / f"{name}.pt"
    if NAME.fullmatch(name or "") and path.is_file():
        return path
    names = _names(root)
    have = f"packaged: {', '.join(names)}" if names else \
        "none are packaged in this installation (python -m seispolarity.pretrained package ...)"
    raise CheckpointError(f"pretrained:{name}: no packaged weights of that name; {have}")


def card(name: str, folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The model card ``<name>.json`` as a dict."""
    path = weights_path(name, folder).with_suffix(".json")
    return json.loads(path.read_text())


def load(name: str, device: str = "cpu"):
    """The packaged model ``name``, built, loaded (as float32) and in eval mode."""
    from ..models import model_from_description
    from ..training.checkpoint import load_checkpoint

    state = load_checkpoint(weights_path(name), map_location="cpu")
    model = model_from_description(state["model"])
    model.load_state_dict(state["model_state_dict"])
    return model.to(device).eval()


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["available", "load", "card", "weights_path", "sha256", "PACKAGE_DIR", "CHECK_SET"]
