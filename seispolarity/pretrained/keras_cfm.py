"""Import the CFM authors' Keras weights (Messuti et al. 2023) with h5py only, no TensorFlow.

    python -m seispolarity.pretrained import cfm-keras CFM_with_timeshift.hdf5 cfm.ckpt
    python -m seispolarity.pretrained import cfm-keras CFM_ensemble_*.hdf5 cfm_ensemble.ckpt

Files read: Keras 2 ``.hdf5`` / ``.h5`` models (``model.save``: ``model_weights/<layer>/<layer>/kernel:0``
and ``bias:0``, the architecture in the root attribute ``model_config``), Keras 2 weights-only files
(``save_weights``: the layer groups at the root, ``layer_names`` attribute), Keras 3 ``.weights.h5``
(``layers/<layer>/vars/0`` kernel, ``vars/1`` bias) and Keras 3 ``.keras`` archives (``config.json``
+ ``model.weights.h5``). The layers are taken in the order of ``model_config`` when the file has
one, else of ``layer_names``, else of Keras's automatic names (``conv1d``, ``conv1d_1``, ...).

The network (the paper's and the published files'): Conv1D 32 k5 same, Dropout, Conv1D 64 k4 valid,
MaxPool 2, Conv1D 128 k3 valid, MaxPool 2, Conv1D 256 k5 same, Dropout, Conv1D 128 k3 valid, MaxPool
2, Flatten, Dense 50 softsign, Dense 1 sigmoid = P(up); ReLU after every convolution. The mapping
onto ``seispolarity.models.CFM`` is exact:

- a Conv1D kernel ``(k, in, out)`` is torch's ``(out, in, k)`` (both cross-correlate; 'same' with
  an odd kernel pads (k-1)/2 on each side in both);
- Keras flattens the last convolution's ``(steps, channels)`` output channels-last, ours
  ``(channels, steps)`` channels-first, so the first dense kernel's rows are permuted:
  torch ``W[j, c * T + t] = keras[t * C + c, j]``;
- the sigmoid unit ``z`` becomes our two logits ``(z, 0)``: ``softmax((z, 0))[0] = sigmoid(z)``, and
  class 0 is up in our convention, as the authors' output is P(up);
- several files make an ``Ensemble`` whose probabilities are the mean of the members' (the
  authors' recipe for ``CFM_ensemble_*.hdf5``).

The checkpoint records ``normalize="cfm"`` (demean on the pre-P part, clip at 20 x the pre-P peak,
peak-normalise) and a 160-sample window, which ``Predictor`` applies.
"""
from __future__ import annotations

import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Sequence

import h5py
import numpy as np
import torch

#: the published architecture: kernel size and padding of the five convolutions
CONV_KERNELS = (5, 4, 3, 5, 3)
CONV_PADDING = ("same", "valid", "valid", "same", "valid")
#: our CFM's parameter indices: features.<i> for the convolutions, classifier.<i> for the dense layers
CONV_INDEX = (0, 3, 6, 9, 12)
DENSE_INDEX = (0, 2)


class KerasImportError(ValueError):
    """A file that is not the published CFM (or not a Keras file): one line naming it."""


@dataclass
class KerasLayer:
    name: str
    class_name: str | None
    config: dict[str, Any] = field(default_factory=dict)
    weights: list[np.ndarray] = field(default_factory=list)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def _natural(name: str) -> tuple:
    """Keras's automatic names in creation order: conv1d < conv1d_1 < conv1d_2 < ... < conv1d_10."""
    m = re.fullmatch(r"(.*?)(?:_(\d+))?", name)
    return (m.group(1), int(m.group(2) or 0)) if m else (name, 0)


def _config_layers(config: Any) -> list[dict[str, Any]]:
    """The layer list of a Keras model config (Sequential or Functional, Keras 2 or 3)."""
    if isinstance(config, (bytes, str)):
        config = json.loads(_text(config))
    if not isinstance(config, dict):
        return []
    inner = config.get("config", config)
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        return []
    out = []
    for entry in layers:
        cfg = dict(entry.get("config") or {})
        out.append({"name": entry.get("name") or cfg.get("name"), "class_name": entry.get("class_name"), "config": cfg})
    return out


def _datasets(group: h5py.Group) -> list[tuple[str, np.ndarray]]:
    found: list[tuple[str, np.ndarray]] = []
    group.visititems(lambda n, obj: found.append((n, np.asarray(obj))) if isinstance(obj, h5py.Dataset) else None)
    return found


def _keras2_weights(group: h5py.Group) -> list[np.ndarray]:
    names = [_text(n) for n in group.attrs.get("weight_names", [])]
    if names:
        return [np.asarray(group[n]) for n in names]
    found = _datasets(group)  # no weight_names: kernel before bias
    return [a for n, a in sorted(found, key=lambda item: ("bias" in item[0], item[0]))]


def _keras3_weights(group: h5py.Group) -> list[np.ndarray]:
    variables = group.get("vars")
    if variables is None:
        return []
    return [np.asarray(variables[k]) for k in sorted(variables, key=int)]


def read_keras_layers(path: str | os.PathLike) -> tuple[list[KerasLayer], dict[str, Any]]:
    """The layers of a Keras file, in model order, with their weights (numpy) and config."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise KerasImportError(f"{path}: no such file")
    config = None
    if zipfile.is_zipfile(path):  # Keras 3 .keras archive
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "model.weights.h5" not in names:
                raise KerasImportError(f"{path}: a zip archive without model.weights.h5; not a .keras model")
            config = json.loads(archive.read("config.json")) if "config.json" in names else None
            blob = io.BytesIO(archive.read("model.weights.h5"))
        with h5py.File(blob, "r") as f:
            return _layers_keras3(f, path, config), {"format": "keras3 .keras"}
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise KerasImportError(f"{path}: not an HDF5 file ({exc})") from None
    with f:
        meta = {k: _text(f.attrs[k]) for k in ("keras_version", "backend") if k in f.attrs}
        if "model_config" in f.attrs:
            config = f.attrs["model_config"]
        if "model_weights" in f:
            return _layers_keras2(f["model_weights"], path, config), {**meta, "format": "keras2 model"}
        if "layers" in f and isinstance(f["layers"], h5py.Group):
            return _layers_keras3(f, path, config), {**meta, "format": "keras3 weights"}
        if "layer_names" in f.attrs:
            return _layers_keras2(f, path, config), {**meta, "format": "keras2 weights"}
    raise KerasImportError(f"{path}: not a Keras model or weights file (no model_weights/ or layers/ group)")


def _ordered(names: Sequence[str], config_layers: list[dict[str, Any]]) -> list[str]:
    in_config = [c["name"] for c in config_layers if c["name"] in names]
    if in_config:
        return in_config + [n for n in names if n not in in_config]
    return sorted(names, key=_natural)


def _layers_keras2(group: h5py.Group, path: str, config: Any) -> list[KerasLayer]:
    config_layers = _config_layers(config)
    names = [_text(n) for n in group.attrs.get("layer_names", [])] or list(group)
    if not config_layers and group.attrs.get("layer_names") is not None:
        order = names  # the file's own order
    else:
        order = _ordered(names, config_layers)
    by_name = {c["name"]: c for c in config_layers}
    return [KerasLayer(n, by_name.get(n, {}).get("class_name"), by_name.get(n, {}).get("config", {}),
                       _keras2_weights(group[n]) if n in group else []) for n in order]


def _layers_keras3(f: h5py.File, path: str, config: Any) -> list[KerasLayer]:
    layers = f["layers"]
    config_layers = _config_layers(config)
    by_name = {c["name"]: c for c in config_layers}
    return [KerasLayer(n, by_name.get(n, {}).get("class_name"), by_name.get(n, {}).get("config", {}),
                       _keras3_weights(layers[n]) if isinstance(layers[n], h5py.Group) else [])
            for n in _ordered(list(layers), config_layers)]


# -- CFM ------------------------------------------------------------------------------------------
def _kind(layer: KerasLayer) -> str:
    if layer.class_name:
        return layer.class_name
    if layer.weights:
        return {3: "Conv1D", 2: "Dense"}.get(layer.weights[0].ndim, "?")
    return "?"


def _input_length(config_layers: list[KerasLayer], steps: int) -> int:
    for layer in config_layers:
        shape = layer.config.get("batch_input_shape") or layer.config.get("batch_shape") or \
            layer.config.get("input_shape")
        if shape and len(shape) >= 2 and shape[-2]:
            return int(shape[-2])
    if steps == 18:
        return 160  # the published window
    for length in range(32, 100_000):  # the shortest window giving ``steps`` after the stack
        if ((((length - 3) // 2) - 2) // 2 - 2) // 2 == steps:
            return length
    raise KerasImportError(f"no input length gives {steps} steps before the flatten")


def cfm_from_keras(path: str | os.PathLike):
    """Our ``CFM`` with the weights of one Keras file, and what the file said about itself."""
    from ..models import CFM

    path = os.fspath(path)
    layers, meta = read_keras_layers(path)
    weighted = [(layer, _kind(layer)) for layer in layers if layer.weights]
    convs = [layer for layer, kind in weighted if kind == "Conv1D"]
    denses = [layer for layer, kind in weighted if kind == "Dense"]
    others = [f"{layer.name} ({kind})" for layer, kind in weighted if kind not in ("Conv1D", "Dense")]
    if others or len(convs) != 5 or len(denses) != 2:
        raise KerasImportError(f"{path}: not the published CFM: expected 5 Conv1D and 2 Dense layers with weights, "
                               f"found {len(convs)} Conv1D, {len(denses)} Dense" + (f" and {others}" if others else ""))
    kernels = [layer.weights[0] for layer in convs]
    sizes = tuple(int(k.shape[0]) for k in kernels)
    base = int(kernels[0].shape[2])
    widths = [base, 2 * base, 4 * base, 8 * base, 4 * base]
    ins = [1] + widths[:-1]
    if sizes != CONV_KERNELS or [int(k.shape[1]) for k in kernels] != ins or \
            [int(k.shape[2]) for k in kernels] != widths:
        raise KerasImportError(f"{path}: not the published CFM: convolution kernels {[k.shape for k in kernels]}; "
                               f"expected (k, in, out) = {list(zip(CONV_KERNELS, ins, widths))}")
    for layer, padding in zip(convs, CONV_PADDING):
        _expect(path, layer, "padding", padding)
        _expect(path, layer, "activation", "relu")
    hidden, out = denses
    fc_activation = str(hidden.config.get("activation", "softsign"))
    if fc_activation not in ("softsign", "relu"):
        raise KerasImportError(f"{path}: layer {hidden.name} has activation {fc_activation!r}; CFM's is softsign")
    _expect(path, out, "activation", "sigmoid")
    w1, b1 = hidden.weights[0], hidden.weights[1]
    w2, b2 = out.weights[0], out.weights[1]
    channels = widths[-1]
    if w1.shape[0] % channels or w2.shape != (w1.shape[1], 1):
        raise KerasImportError(f"{path}: dense kernels {w1.shape} and {w2.shape} do not follow a flatten of "
                               f"{channels} channels and end in one sigmoid unit")
    steps = w1.shape[0] // channels
    dropout = [float(layer.config["rate"]) for layer in layers
               if layer.class_name == "Dropout" and "rate" in layer.config]
    model = CFM(num_classes=2, input_length=_input_length(layers, steps), base_channels=base,
                fc_units=int(w1.shape[1]), dropout=dropout[0] if dropout else 0.2, fc_activation=fc_activation)
    state = {}
    for i, layer in zip(CONV_INDEX, convs):
        kernel, bias = layer.weights[0], layer.weights[1]
        state[f"features.{i}.weight"] = np.ascontiguousarray(kernel.transpose(2, 1, 0))
        state[f"features.{i}.bias"] = bias
    # channels-last flatten (t * C + c) -> channels-first (c * T + t)
    state["classifier.0.weight"] = np.ascontiguousarray(
        w1.reshape(steps, channels, -1).transpose(1, 0, 2).reshape(channels * steps, -1).T)
    state["classifier.0.bias"] = b1
    state["classifier.2.weight"] = np.concatenate([w2.T, np.zeros_like(w2.T)], axis=0)  # logits (z, 0)
    state["classifier.2.bias"] = np.concatenate([b2, np.zeros_like(b2)])
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in state.items()})
    return model.eval(), meta


def _expect(path: str, layer: KerasLayer, key: str, value: str) -> None:
    got = layer.config.get(key)
    if got is not None and str(got) != value:
        raise KerasImportError(f"{path}: layer {layer.name} has {key}={got!r}; the published CFM has {value!r}")


def import_cfm_keras(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> dict[str, Any]:
    """Read one or more CFM Keras files and write ``out``: a CFM checkpoint, or for several files an
    ensemble that averages their probabilities. Returns the checkpoint written."""
    from ..models import Ensemble
    from ..training.checkpoint import save_checkpoint
    from .imported import imported_state

    if not paths:
        raise KerasImportError("import cfm-keras needs at least one .hdf5 file")
    built = [cfm_from_keras(p) for p in paths]
    models = [m for m, _ in built]
    if len(models) == 1:
        model = models[0]
    else:
        model = Ensemble([m.describe() for m in models])
        for member, source in zip(model.members, models):
            member.load_state_dict(source.state_dict())
        model.eval()
    state = imported_state(
        model, normalize="cfm", files=paths,
        source={"format": "cfm-keras", "keras": [meta for _, meta in built], "paper": "Messuti et al. 2023, "
                "Front. Earth Sci. 11, 1223686"},
        notes="sigmoid P(up) mapped to logits (z, 0); " + (f"ensemble of {len(models)} files, probabilities averaged"
                                                          if len(models) > 1 else "one network"))
    save_checkpoint(state, out)
    return state


__all__ = ["import_cfm_keras", "cfm_from_keras", "read_keras_layers", "KerasImportError"]
