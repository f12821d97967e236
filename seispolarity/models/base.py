"""The base class every polarity model derives from, and the model registry."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, Callable, ClassVar

import torch
from torch import nn

MODEL_REGISTRY: dict[str, type[PolarityModel]] = {}


def register_model(name: str) -> Callable[[type[PolarityModel]], type[PolarityModel]]:
    """Class decorator: make a model available as ``get_model(name)`` and ``model=<name>``."""

    def wrap(cls: type[PolarityModel]) -> type[PolarityModel]:
        if name in MODEL_REGISTRY and MODEL_REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is registered twice")
        cls.registry_name = name
        MODEL_REGISTRY[name] = cls
        _record_init_kwargs(cls)
        return cls

    return wrap


def _record_init_kwargs(cls: type[PolarityModel]) -> None:
    """Wrap ``__init__`` so each instance remembers the arguments it was built with.

    Checkpoints store ``(registry_name, init_kwargs)``, which is all a Predictor needs to rebuild
    the model; no code is pickled.
    """
    original = cls.__init__
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if type(self) is cls:
            bound = signature.bind(self, *args, **kwargs)
            params = dict(bound.arguments)
            params.pop("self", None)
            for pname, param in signature.parameters.items():  # fold **kwargs into the dict
                if param.kind is inspect.Parameter.VAR_KEYWORD and pname in params:
                    params.update(params.pop(pname))
            self.init_kwargs = params

    cls.__init__ = __init__


class PolarityModel(nn.Module):
    """A first-motion classifier.

    ``forward(x)`` takes ``(B, in_channels, L)`` float32 with the P pick at sample ``L // 2`` and
    returns logits ``(B, num_classes)``. An input longer than ``input_length`` is cropped around its
    centre, so a dataset whose windows are longer than the model needs works unchanged.

    Models with auxiliary heads (a P-pick mask, onset clarity, a reconstruction) override
    ``forward_with_aux(x, targets)``, which returns ``(logits, aux_loss)``; ``aux_loss`` is ``None``
    when ``targets`` lacks what the head needs. ``forward(x, targets)`` dispatches to it so the
    call goes through ``DistributedDataParallel``'s forward.
    """

    registry_name: ClassVar[str] = ""
    #: Names of the batch keys an auxiliary head learns from (e.g. ``("p_index",)``).
    aux_targets: ClassVar[tuple[str, ...]] = ()
    #: Parameter-name prefixes of the classification head: what stays trainable when the feature
    #: layers are frozen for fine-tuning (``trainer.freeze=features``); everything else is a feature.
    head_prefixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, num_classes: int, input_length: int, in_channels: int = 1) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self.input_length = int(input_length)
        self.in_channels = int(in_channels)

    # -- input handling ---------------------------------------------------------------------
    def fit_input(self, x: torch.Tensor) -> torch.Tensor:
        """Check the shape and centre-crop a longer window to ``input_length`` (a view, no copy)."""
        if x.dim() == 2:  # (B, L) single channel
            x = x.unsqueeze(1)
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input (B, {self.in_channels}, {self.input_length}), "
                f"got {tuple(x.shape)}")
        length = x.shape[-1]
        if length < self.input_length:
            raise ValueError(
                f"{type(self).__name__} needs windows of {self.input_length} samples, got {length}; "
                f"set the dataset's window_length to at least {self.input_length}")
        if length > self.input_length:
            start = length // 2 - self.input_length // 2
            x = x[..., start:start + self.input_length]
        return x

    # -- training hooks ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor, targets: dict | None = None):
        if targets is None:
            return self.classify(x)
        return self.forward_with_aux(x, targets)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_with_aux(self, x: torch.Tensor, targets: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.classify(x), None

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class probabilities and, for models that have one, a per-trace uncertainty."""
        return torch.softmax(self.classify(x).float(), dim=-1), None

    # -- fine-tuning --------------------------------------------------------------------------
    def head_parameter_names(self) -> list[str]:
        """Names (as in ``named_parameters()``) of the classification head's parameters."""
        if not self.head_prefixes:
            raise NotImplementedError(f"{type(self).__name__} does not say which parameters are its head "
                                      f"(head_prefixes); it cannot freeze its features")
        return [n for n, _ in self.named_parameters() if n.startswith(self.head_prefixes)]

    def freeze_features(self) -> list[str]:
        """Stop gradients to every parameter outside the head; returns the frozen names. BatchNorm
        layers whose parameters are all frozen keep their running statistics too (see
        ``frozen_norm_layers``)."""
        head = set(self.head_parameter_names())
        frozen = []
        for name, param in self.named_parameters():
            param.requires_grad_(name in head)
            if name not in head:
                frozen.append(name)
        return frozen

    def frozen_norm_layers(self) -> list[nn.Module]:
        """Normalisation layers with running statistics whose own parameters are all frozen: the
        Trainer keeps them in eval mode, so frozen features stay bit-identical while the head trains."""
        out = []
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase):
                params = list(module.parameters(recurse=False))
                if params and not any(p.requires_grad for p in params):
                    out.append(module)
        return out

    # -- description ------------------------------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> dict:
        return {
            "name": self.registry_name or type(self).__name__,
            "init_kwargs": dict(getattr(self, "init_kwargs", {})),
            "num_classes": self.num_classes,
            "input_length": self.input_length,
            "in_channels": self.in_channels,
            "parameters": self.num_parameters(),
        }


def model_from_description(described: Any) -> PolarityModel:
    """Rebuild the model a checkpoint describes (``state["model"]``: ``name`` and ``init_kwargs``;
    an ensemble: ``name="ensemble"`` and its ``members``)."""
    if not isinstance(described, Mapping) or "name" not in described:
        raise ValueError("no model description (a dict with 'name' and 'init_kwargs')")
    if described["name"] == "ensemble":
        from .ensemble import Ensemble

        return Ensemble(**dict(described.get("init_kwargs") or {}))
    return get_model(described["name"], **dict(described.get("init_kwargs") or {}))


def get_model(name: str, **kwargs) -> PolarityModel:
    """Build a registered model by name, e.g. ``get_model("ross", num_classes=3)``."""
    key = name.lower()
    if key not in MODEL_REGISTRY:
        raise KeyError(f"unknown model {name!r}; choose one of {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[key](**kwargs)


def list_models() -> list[str]:
    return sorted(MODEL_REGISTRY)
