"""Package a trained checkpoint as shipped weights: ``<name>.pt`` (float16) and its ``<name>.json`` card.

    python -m seispolarity.pretrained package <run>/checkpoints/best.ckpt --name ppnet-synthetic \\
        --command "python train.py experiment=pretrain_ppnet" [--real-metrics '{"toc2me": 0.91}']

Steps: load the checkpoint; keep what prediction needs (model description, weights, preprocessing,
label map, the run's config); cast the weights to float16; score the float32 and the float16 model
on the seeded check set (``CHECK_SET``: ``synthesise(2000, seed=12345)``, P at ``p_pick``) and refuse
when any probability differs by more than ``tolerance`` (1e-3); write ``<name>.pt`` atomically,
hash it, and write the card with the check set's accuracy, the run's synthetic test metrics (its
``metrics.json``, two folders above the checkpoint), the real-record metrics given, the data recipe
version and the command that reproduces the weights.
"""
from __future__ import annotations

import datetime
import functools
import json
import os
import platform
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..folders import atomic_file
from . import CHECK_SET, NAME, PACKAGE_DIR, sha256

#: what a packaged checkpoint keeps of a training checkpoint (optimizer state, RNG states and
#: history are dropped)
KEPT = ("model", "data", "label_map", "epoch", "best_metrics", "run_config", "training_config", "data_identity")


@functools.lru_cache(maxsize=2)
def check_set_data(num_traces: int = CHECK_SET["num_traces"], seed: int = CHECK_SET["seed"]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The check set's (waveforms (N, L), labels (N,), P samples (N,)), generated in memory."""
    from ..data.synthetic import synthesise

    data = synthesise(int(num_traces), seed=int(seed))
    return data["X"], data["Y"].astype(np.int64), data[CHECK_SET["p_index"]].astype(np.int64)


def check_set_scores(checkpoint: Any, spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Score a checkpoint (path, ``pretrained:<name>`` or loaded dict) on the check set with a CPU
    Predictor: ``accuracy`` over the traces whose label the model can output (all three classes for a
    three-class model, up/down for a two-class one), ``updown_accuracy`` over up/down traces, the
    counts, and the probabilities (numpy, not for the card)."""
    from ..inference import Predictor

    spec = dict(spec or CHECK_SET)
    x, y, p = check_set_data(int(spec["num_traces"]), int(spec["seed"]))
    predictor = Predictor(checkpoint, device="cpu", batch_size=250)
    result = predictor.predict_arrays(x, p_index=p)
    pred = result.raw_predictions
    scored = y < predictor.num_classes
    updown = y < 2
    return {"accuracy": float(np.mean(pred[scored] == y[scored])), "correct": int(np.sum(pred[scored] == y[scored])),
            "scored": int(scored.sum()), "updown_accuracy": float(np.mean(pred[updown] == y[updown])),
            "updown_scored": int(updown.sum()), "probabilities": result.probabilities}


def slim_state(state: Mapping[str, Any], name: str, description: str, dtype: torch.dtype) -> dict[str, Any]:
    """What the packaged file holds: the model, its weights in ``dtype``, its preprocessing."""
    from ..data.labels import CLASS_NAMES

    weights = {k: (v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v)
               for k, v in state["model_state_dict"].items()}
    model = dict(state["model"])
    data = dict(state.get("data") or {})
    k = int(model.get("num_classes") or 3)
    out = {key: state[key] for key in KEPT if state.get(key) is not None}
    out.update(model_state_dict=weights, class_names=list(CLASS_NAMES[:k]),
               preprocessing=preprocessing(model, data, k),
               pretrained={"name": name, "description": description, "dtype": str(dtype).replace("torch.", "")})
    return out


def preprocessing(model: Mapping[str, Any], data: Mapping[str, Any], num_classes: int) -> dict[str, Any]:
    """The input the weights expect, in words and numbers (the card and the .pt both carry it)."""
    from ..data.labels import CLASS_NAMES

    length = int(model.get("input_length") or data.get("window_length") or 0)
    return {"input_length": length, "channels": int(model.get("in_channels") or 1),
            "window": f"{length} samples with P at sample {length // 2}",
            "normalize": data.get("normalize", "peak"), "sampling_rate": float(data.get("sampling_rate") or 100.0),
            "class_names": list(CLASS_NAMES[:num_classes])}


def run_metrics(checkpoint: str) -> dict[str, Any] | None:
    """The synthetic test metrics of the run that wrote ``checkpoint`` (``<run>/metrics.json``)."""
    path = Path(checkpoint).resolve().parent.parent / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    test = metrics.get("test") or {}
    out = {k: test.get(k) for k in ("accuracy", "updown_accuracy", "macro_f1", "loss", "num_samples",
                                    "excluded_unknown") if test.get(k) is not None}
    if metrics.get("evaluated") or test.get("evaluated"):
        out["evaluated"] = metrics.get("evaluated") or test.get("evaluated")
    out["run_dir"] = metrics.get("run_dir")
    return out or None


def package(checkpoint: str | os.PathLike, name: str, command: str, real_metrics: Mapping[str, Any] | None = None,
            out_dir: str | os.PathLike | None = None, description: str | None = None, dtype: str = "float16",
            tolerance: float = 1e-3, check_set: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``<out_dir>/<name>.pt`` and ``<name>.json`` (default: into the package); returns the card."""
    from ..data.synthetic import GENERATOR, GENERATOR_VERSION
    from ..training.checkpoint import load_checkpoint, save_checkpoint

    if not NAME.fullmatch(name or ""):
        raise ValueError(f"--name {name!r}: lower-case letters, digits, '.', '_' and '-' only (it names the files "
                         f"and pretrained:<name>)")
    if dtype not in ("float16", "float32"):
        raise ValueError(f"--dtype {dtype!r}: expected float16 or float32")
    checkpoint = os.fspath(checkpoint)
    state = load_checkpoint(checkpoint)
    if not isinstance(state.get("model"), Mapping) or "name" not in state["model"]:
        raise ValueError(f"{checkpoint}: no model description; package a checkpoint written by the Trainer or an "
                         f"importer")
    spec = dict(check_set or CHECK_SET)
    description = description or _describe(state, spec)
    slim = slim_state(state, name, description, getattr(torch, dtype))
    full = check_set_scores(state, spec)
    packed = check_set_scores(slim, spec)
    gap = np.abs(full["probabilities"] - packed["probabilities"])
    diff = float(gap.max()) if gap.size else 0.0
    if diff > tolerance:
        raise ValueError(f"{checkpoint}: as {dtype} its probabilities on the check set differ from float32 by up to "
                         f"{diff:.2e} (> {tolerance:g}); package it with --dtype float32")
    folder = Path(out_dir) if out_dir is not None else PACKAGE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    pt = folder / f"{name}.pt"
    save_checkpoint(slim, pt)
    run_config = state.get("run_config") or {}
    card = {
        "name": name,
        "description": description,
        "file": pt.name,
        "sha256": sha256(pt),
        "bytes": pt.stat().st_size,
        "dtype": dtype,
        "command": command,
        "model": {k: v for k, v in dict(state["model"]).items()},
        "preprocessing": slim["preprocessing"],
        "data_recipe": {"generator": GENERATOR, "generator_version": int(GENERATOR_VERSION),
                        "training_data": run_config.get("data")},
        "synthetic_test_metrics": run_metrics(checkpoint),
        "real_record_metrics": dict(real_metrics or {}),
        "check_set": {**spec, "generator_version": int(GENERATOR_VERSION),
                      **{k: full[k] if dtype == "float32" else packed[k]
                         for k in ("accuracy", "correct", "scored", "updown_accuracy", "updown_scored")},
                      "max_probability_difference_vs_float32": diff},
        "trained": {"epochs": state.get("epoch"), "best": state.get("best_metrics"), "seed": run_config.get("seed")},
        "source_checkpoint": os.path.abspath(checkpoint),
        "packaged": {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "torch": torch.__version__, "python": platform.python_version()},
    }
    with atomic_file(pt.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(_plain(card), indent=2) + "\n")
    return card


def _describe(state: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    from ..data.labels import CLASS_NAMES

    model = state["model"]
    k = int(model.get("num_classes") or 3)
    data = state.get("data") or {}
    trained = (state.get("run_config") or {}).get("data") or {}
    where = "synthetic data only" if str(trained.get("_target_", "")).endswith("synthetic_dataset") else \
        f"{trained.get('name') or 'its data'}"
    return (f"{model.get('name')} ({', '.join(CLASS_NAMES[:k])}), {model.get('input_length')} samples at "
            f"{float(data.get('sampling_rate') or 100):g} Hz, normalize={data.get('normalize', 'peak')}; trained on "
            f"{where}")


def _plain(value: Any) -> Any:
    from ..plain import to_plain

    if torch.is_tensor(value):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return to_plain(value)


__all__ = ["package", "check_set_scores", "check_set_data", "slim_state", "preprocessing"]
