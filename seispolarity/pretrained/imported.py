"""What every importer writes: a normal SeisPolarity checkpoint of imported weights."""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from . import sha256


def imported_state(model, normalize: str, source: Mapping[str, Any], files: Sequence[str | os.PathLike],
                   sampling_rate: float = 100.0, notes: str = "") -> dict[str, Any]:
    """The checkpoint dict of an imported model: its description and weights, the preprocessing the
    weights expect (``data``: window, normalisation, sampling rate, read by ``Predictor``,
    ``train=false`` and ``init_from``), class names, and where the weights came from."""
    from ..data.labels import CLASS_NAMES
    from .package import preprocessing

    described = model.describe()
    data = {"window_length": int(model.input_length), "normalize": normalize, "sampling_rate": float(sampling_rate),
            "num_channels": int(model.in_channels)}
    return {
        "model": described,
        "model_state_dict": model.state_dict(),
        "data": data,
        "label_map": None,
        "class_names": list(CLASS_NAMES[:model.num_classes]),
        "preprocessing": preprocessing(described, data, model.num_classes),
        "epoch": 0,
        "imported": {**dict(source), "notes": notes,
                     "files": [{"path": os.path.abspath(os.fspath(f)), "sha256": sha256(f)} for f in files]},
    }


__all__ = ["imported_state"]
