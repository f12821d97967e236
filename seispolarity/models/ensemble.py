"""An ensemble of polarity models whose class probabilities are averaged.

CFM's authors publish eight independently trained networks and average their P(up); any set of
models of this zoo with the same input window and classes can be combined the same way. The
ensemble is not a registered model (it has no config group of its own): a checkpoint describes it
as ``{"name": "ensemble", "init_kwargs": {"members": [<member descriptions>]}}`` and
``model_from_description`` rebuilds it, so ``Predictor``, ``train=false ckpt_path=...`` and
``init_from=...`` take ensemble checkpoints like any other.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .base import PolarityModel, get_model


class Ensemble(PolarityModel):
    """Average of its members' class probabilities.

    ``classify`` returns ``log(mean_k softmax(member_k(x)))``, so the softmax of its output is the
    mean probability (what a Predictor reports) and cross-entropy on it trains the whole ensemble.

    Args:
        members: descriptions of the members, each ``{"name": <registry name>, "init_kwargs": {...}}``
            (what ``PolarityModel.describe()`` returns); they must agree on input length, channels
            and number of classes.
    """

    registry_name = "ensemble"

    def __init__(self, members: Sequence[Mapping[str, Any]]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        built = [get_model(str(m["name"]), **dict(m.get("init_kwargs") or {})) for m in members]
        first = built[0]
        for i, model in enumerate(built[1:], start=1):
            for attr in ("input_length", "in_channels", "num_classes"):
                if getattr(model, attr) != getattr(first, attr):
                    raise ValueError(f"ensemble member {i} ({model.registry_name}) has {attr}={getattr(model, attr)}, "
                                     f"member 0 ({first.registry_name}) {getattr(first, attr)}")
        super().__init__(first.num_classes, first.input_length, first.in_channels)
        self.members = nn.ModuleList(built)
        self.init_kwargs = {"members": [{"name": m.registry_name, "init_kwargs": dict(m.init_kwargs)} for m in built]}

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fit_input(x)
        logp = torch.stack([torch.log_softmax(m(x).float(), dim=-1) for m in self.members])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))

    def head_parameter_names(self) -> list[str]:
        return [f"members.{i}.{name}" for i, m in enumerate(self.members) for name in m.head_parameter_names()]

    def describe(self) -> dict:
        out = super().describe()
        out["name"] = "ensemble"
        return out


__all__ = ["Ensemble"]
