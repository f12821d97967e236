"""PolarCAP: a convolutional autoencoder whose bottleneck classifies first motions (Chakraborty et al. 2022)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import PolarityModel, register_model

PADDINGS = ("same", "symmetric")


def _conv_same(cin: int, cout: int, k: int, padding: str = "same") -> nn.Sequential:
    """Convolution with explicit zero padding (so PyTorch does not warn about even kernels):
    ``"same"`` is Keras-style (``(k-1)//2`` left, the extra zero on the right; the length is kept),
    ``"symmetric"`` pads ``k//2`` on both sides (one sample longer for an even kernel: SeisPolarity
    0.1.4's ``Conv1d(padding=k//2)``)."""
    left = (k - 1) // 2 if padding == "same" else k // 2
    right = k - 1 - left if padding == "same" else k // 2
    return nn.Sequential(nn.ConstantPad1d((left, right), 0.0), nn.Conv1d(cin, cout, k))


@register_model("polarcap")
class PolarCAP(PolarityModel):
    """PolarCAP first-motion classifier with an auxiliary waveform reconstruction.

    Paper: Chakraborty, M., et al. (2022). PolarCAP -- a deep learning approach
    for first motion polarity classification of earthquake waveforms. *Artificial Intelligence in
    Geosciences* 3, 46-52.

    Input: ``(B, 1, 64)`` -- 0.64 s at 100 Hz with P at the centre (longer windows are centre-cropped);
    when ``normalize`` (default) each trace is divided by its peak absolute amplitude inside the model,
    the paper's preprocessing, so the tanh decoder can reproduce it. Classes: 2 (0 up, 1 down).

    Architecture: encoder -- conv 32 k32 'same' -> ReLU -> dropout 0.3 -> BatchNorm -> max-pool 2 ->
    conv 8 k16 -> ReLU -> BatchNorm -> max-pool 2 (bottleneck 8 x 16); classifier -- flatten (128) ->
    linear to ``num_classes``; decoder -- conv 8 k16 -> tanh -> BatchNorm -> upsample 2 -> conv 32 k32
    -> ReLU -> BatchNorm -> upsample 2 -> conv 1 k64 -> tanh (the reconstructed trace).

    Loss, and the deviation from the paper: the paper trains ``MSE(reconstruction) + 10 x Huber(delta
    0.5)`` on the softmax output. Our Trainer applies one cross-entropy to every model's logits, so this
    model returns logits for that, and ``forward_with_aux`` returns the reconstruction MSE times
    ``recon_loss_weight`` (default 1.0) as the auxiliary loss -- always, it needs no target
    (``aux_targets = ()``). The classification loss is therefore cross-entropy, not Huber.
    ``reconstruct(x)`` returns the decoder's output.

    Parameters at the defaults: 16,883 (identical to the public PyTorch reimplementation, SeisPolarity's
    ``PolarCAP``, which also has two outputs).

    Args:
        num_classes: 2 (paper) or more.
        input_length: samples (paper: 64); must be >= 4.
        dropout: dropout after the first convolution (paper: 0.3).
        recon_loss_weight: weight of the reconstruction MSE in the auxiliary loss.
        normalize: divide each trace by its peak absolute amplitude first (paper: yes).
        padding: ``"same"`` (default; Keras 'same' as in the paper: ``(k-1)//2`` zeros left, ``k//2``
            right, lengths 64 -> 32 -> 16) or ``"symmetric"`` (``k//2`` zeros on both sides, as
            SeisPolarity 0.1.4's PyTorch port pads its even kernels: each convolution is one sample
            longer, 65 and 33, so the max-pools pair other samples; the decoder upsamples by 2 and its
            output is cut to ``input_length``). Same parameters either way; ``"symmetric"`` is what the
            0.1.4 importer builds.
    """

    #: the classification head, trainable under ``trainer.freeze=features``: the linear layer on the bottleneck
    head_prefixes = ("classifier.",)

    def __init__(self, num_classes: int = 2, input_length: int = 64, dropout: float = 0.3,
                 recon_loss_weight: float = 1.0, normalize: bool = True, padding: str = "same") -> None:
        super().__init__(num_classes, input_length, in_channels=1)
        if input_length < 4:
            raise ValueError(f"PolarCAP needs input_length >= 4, got {input_length}")
        if padding not in PADDINGS:
            raise ValueError(f"PolarCAP padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        self.recon_loss_weight = float(recon_loss_weight)
        self.normalize = bool(normalize)
        self.padding = padding
        pad = padding
        self.encoder = nn.Sequential(
            _conv_same(self.in_channels, 32, 32, pad), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.BatchNorm1d(32), nn.MaxPool1d(2),
            _conv_same(32, 8, 16, pad), nn.ReLU(inplace=True), nn.BatchNorm1d(8), nn.MaxPool1d(2),
        )
        self.dec1 = nn.Sequential(_conv_same(8, 8, 16, pad), nn.Tanh(), nn.BatchNorm1d(8))
        self.dec2 = nn.Sequential(_conv_same(8, 32, 32, pad), nn.ReLU(inplace=True), nn.BatchNorm1d(32))
        self.dec3 = nn.Sequential(_conv_same(32, self.in_channels, 64, pad), nn.Tanh())
        # bottleneck steps: L // 4 with 'same'; with 'symmetric' each even-kernel convolution adds one
        steps = input_length // 4 if padding == "same" else ((input_length + 1) // 2 + 1) // 2
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * steps, self.num_classes))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fit_input(x)
        if self.normalize:
            x = x / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12)
        return x

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        length = self.input_length
        if self.padding == "symmetric":  # 0.1.4: Upsample(scale_factor=2) twice, the output cut to the window
            h = F.interpolate(self.dec1(z), scale_factor=2, mode="nearest")
            h = F.interpolate(self.dec2(h), scale_factor=2, mode="nearest")
            return self.dec3(h)[..., :length]
        h = F.interpolate(self.dec1(z), size=length // 2, mode="nearest")
        h = F.interpolate(self.dec2(h), size=length, mode="nearest")
        return self.dec3(h)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(self._prepare(x)))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's reconstruction ``(B, 1, input_length)`` of the (normalised) window."""
        return self._decode(self.encoder(self._prepare(x)))

    def forward_with_aux(self, x: torch.Tensor, targets: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._prepare(x)
        z = self.encoder(x)
        recon = self._decode(z)
        loss = F.mse_loss(recon.float(), x.float())
        return self.classifier(z), self.recon_loss_weight * loss
