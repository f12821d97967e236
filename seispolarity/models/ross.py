"""Ross, Meier & Hauksson (2018): the SCSN first-motion CNN."""
from __future__ import annotations

import torch
from torch import nn

from .base import PolarityModel, register_model


@register_model("ross")
class Ross(PolarityModel):
    """First-motion polarity CNN of Ross et al. (2018), trained on SCSN.

    Paper: Ross, Z. E., Meier, M.-A. & Hauksson, E. (2018). P wave arrival picking and first-motion
    polarity determination with deep learning. *Journal of Geophysical Research: Solid Earth* 123,
    5120-5129.

    Input: ``(B, 1, 400)`` -- 4 s of vertical component at 100 Hz with P at the centre (a longer window
    is centre-cropped). Classes: 3 (0 up, 1 down, 2 unknown).

    Architecture: three convolution blocks ``[conv (32, 64, 128 channels; kernels 21, 15, 11; 'same'
    padding) -> BatchNorm -> ReLU -> max-pool 2]``, flatten (128 x 50 = 6400 at 400 samples), two
    fully connected blocks ``[FC 512 -> BatchNorm -> ReLU]`` (optional dropout, off by default as in
    the paper) and a linear layer to ``num_classes`` logits.

    Parameters at the defaults: 3,665,731 (identical to the public PyTorch reimplementation,
    SeisPolarity's ``SCSN``).

    Args:
        num_classes: number of output logits (paper: 3).
        input_length: samples the network sees (paper: 400); must be >= 8.
        base_channels: width of the first convolution; the others are 2x and 4x (paper: 32).
        kernel_sizes: kernel sizes of the three convolutions (paper: 21, 15, 11).
        fc_units: width of the two fully connected layers (paper: 512).
        dropout: dropout after each fully connected block (paper: none, 0.0).
        num_fm_classes: alias of ``num_classes`` (SeisPolarity's name for it).
    """

    #: the classification head, trainable under ``trainer.freeze=features``: the two fully connected blocks and the
    #: output layer
    head_prefixes = ("fc.", "head.")

    def __init__(self, num_classes: int | None = None, input_length: int = 400,
                 base_channels: int = 32, kernel_sizes: tuple[int, int, int] = (21, 15, 11),
                 fc_units: int = 512, dropout: float = 0.0, num_fm_classes: int | None = None) -> None:
        num_classes = _resolve_num_classes(num_classes, num_fm_classes, default=3)
        super().__init__(num_classes, input_length, in_channels=1)
        if input_length < 8:
            raise ValueError(f"Ross needs input_length >= 8, got {input_length}")
        widths = [base_channels, 2 * base_channels, 4 * base_channels]
        layers: list[nn.Module] = []
        cin = self.in_channels
        for cout, k in zip(widths, kernel_sizes):
            layers += [nn.Conv1d(cin, cout, kernel_size=k, padding="same"), nn.BatchNorm1d(cout),
                       nn.ReLU(inplace=True), nn.MaxPool1d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        flat = widths[-1] * (input_length // 8)
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, fc_units), nn.BatchNorm1d(fc_units), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(fc_units, fc_units), nn.BatchNorm1d(fc_units), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )
        self.head = nn.Linear(fc_units, self.num_classes)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fit_input(x)
        return self.head(self.fc(self.features(x)))


def _resolve_num_classes(num_classes: int | None, num_fm_classes: int | None, default: int) -> int:
    """Accept ``num_fm_classes`` (the docs' spelling) as an alias of ``num_classes``."""
    if num_fm_classes is not None:
        if num_classes is not None and int(num_classes) != int(num_fm_classes):
            raise ValueError(f"num_classes={num_classes} and num_fm_classes={num_fm_classes} disagree")
        return int(num_fm_classes)
    return default if num_classes is None else int(num_classes)
