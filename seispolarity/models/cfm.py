"""CFM: a compact CNN for first motions in volcanic and tectonic areas (Messuti et al. 2023)."""
from __future__ import annotations

import torch
from torch import nn

from .base import PolarityModel, register_model

#: activations after CFM's dense layer (index 1 of ``classifier``; neither has parameters)
FC_ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "softsign": nn.Softsign}


@register_model("cfm")
class CFM(PolarityModel):
    """CFM first-motion polarity CNN.

    Paper: Messuti, G., Scarpetta, S., Amoroso, O., et al. (2023). CFM: a convolutional neural network
    for first-motion polarity classification of seismic records in volcanic and tectonic areas.
    *Frontiers in Earth Science* 11, 1223686.

    Input: ``(B, 1, 160)`` -- 1.6 s at 100 Hz with P at the centre (longer windows are centre-cropped).
    Classes: 2 (0 up, 1 down).

    Architecture (all activations ReLU): conv 32 k5 'same' -> dropout 0.2 -> conv 64 k4 'valid' ->
    max-pool 2 -> conv 128 k3 'valid' -> max-pool 2 -> conv 256 k5 'same' -> dropout 0.2 -> conv 128
    k3 'valid' -> max-pool 2 -> flatten (128 x 18 = 2304 at 160 samples) -> FC 50 -> ReLU (the authors'
    Keras files: softsign, ``fc_activation="softsign"``) -> linear to ``num_classes`` logits. The paper
    ends in one sigmoid unit; here the last layer gives ``num_classes`` logits (2 by default), which
    adds 51 parameters. A sigmoid output ``z`` (P(up)) is the same model as the logits ``(z, 0)``:
    ``softmax((z, 0))[0] = sigmoid(z)``, which is how ``python -m seispolarity.pretrained import
    cfm-keras`` maps the authors' weights.

    Parameters at the defaults: 411,032 -- the public PyTorch reimplementation (SeisPolarity's ``CFM``,
    one sigmoid output) has 410,981; the difference (+51, 0.012%) is the second logit.

    Args:
        num_classes: 2 (paper) or more.
        input_length: samples (paper: 160); must be >= 32.
        base_channels: width of the first convolution; the others are 2x, 4x, 8x and 4x (paper: 32).
        fc_units: hidden units of the dense layer (paper: 50).
        dropout: dropout after the first and fourth convolutions (paper: 0.2).
        fc_activation: activation after the dense layer, "relu" (default) or "softsign" (the
            authors' published Keras models).
    """

    #: the classification head, trainable under ``trainer.freeze=features``: FC 50 and the output layer
    head_prefixes = ("classifier.",)

    def __init__(self, num_classes: int = 2, input_length: int = 160, base_channels: int = 32,
                 fc_units: int = 50, dropout: float = 0.2, fc_activation: str = "relu") -> None:
        super().__init__(num_classes, input_length, in_channels=1)
        if input_length < 32:
            raise ValueError(f"CFM needs input_length >= 32, got {input_length}")
        if fc_activation not in FC_ACTIVATIONS:
            raise ValueError(f"CFM fc_activation={fc_activation!r}; expected one of {sorted(FC_ACTIVATIONS)}")
        b = base_channels
        self.features = nn.Sequential(
            nn.Conv1d(self.in_channels, b, 5, padding="same"), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Conv1d(b, 2 * b, 4), nn.ReLU(inplace=True), nn.MaxPool1d(2),
            nn.Conv1d(2 * b, 4 * b, 3), nn.ReLU(inplace=True), nn.MaxPool1d(2),
            nn.Conv1d(4 * b, 8 * b, 5, padding="same"), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Conv1d(8 * b, 4 * b, 3), nn.ReLU(inplace=True), nn.MaxPool1d(2),
            nn.Flatten(),
        )
        length = ((((input_length - 3) // 2) - 2) // 2 - 2) // 2
        self.classifier = nn.Sequential(nn.Linear(4 * b * length, fc_units), FC_ACTIVATIONS[fc_activation](),
                                        nn.Linear(fc_units, self.num_classes))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fit_input(x)
        return self.classifier(self.features(x))
