"""RPNet: inception + LSTM + attention with Monte-Carlo dropout (Han, Kim & Sheen 2025)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import PolarityModel, register_model


class _Inception(nn.Module):
    """GoogLeNet-style module: 1x1 | 1x1->3 | 1x1->5 | maxpool3->1x1, each conv followed by ReLU
    (``relu=False``: no ReLU inside the branches, SeisPolarity 0.1.4's module; the indices of the
    convolutions, hence the state-dict keys, are the same either way)."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int, relu: bool = True) -> None:
        super().__init__()
        act = (lambda: nn.ReLU(inplace=True)) if relu else nn.Identity
        self.b1 = nn.Sequential(nn.Conv1d(cin, c1, 1), act())
        self.b3 = nn.Sequential(nn.Conv1d(cin, c3r, 1), act(), nn.Conv1d(c3r, c3, 3, padding=1), act())
        self.b5 = nn.Sequential(nn.Conv1d(cin, c5r, 1), act(), nn.Conv1d(c5r, c5, 5, padding=2), act())
        self.bp = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(cin, cp, 1), act())
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


@register_model("rpnet")
class RPNet(PolarityModel):
    """RPNet: robust P-wave first-motion polarity with Monte-Carlo-dropout uncertainty.

    Paper: Han, J., Kim, S. & Sheen, D.-H. (2025). RPNet: robust P-wave first-motion polarity
    determination using deep learning. *Seismological Research Letters*.

    Input: ``(B, 1, 400)`` -- 4 s at 100 Hz with P at the centre (longer windows are centre-cropped).
    Classes: 2 (0 up, 1 down).

    Architecture: feature extraction -- conv 64 k3 stride 2 -> ReLU -> max-pool 2 (400 -> 100), two
    inception modules (1x1 | 1x1->3 | 1x1->5 | pool->1x1, GoogLeNet's 3a/3b widths: 64 -> 224 -> 480
    channels); P-wave focusing -- max-pool 2 (-> 50 steps), LSTM (480 units), 8-head self-attention;
    classification -- flatten (50 x 480) -> FC 128 -> ReLU -> dropout 0.2 (kept active at inference:
    Monte-Carlo dropout) -> linear to ``num_classes`` logits.

    Uncertainty: ``predict_proba(x, mc_samples=N)`` runs N stochastic passes with the dropout active and
    returns ``(mean class probabilities (B, C), std over the passes of the probability of the predicted
    class (B,))`` -- the spread is a standard deviation, not an entropy. The dropout is the network's
    only stochastic layer and sits after all other layers, so the deterministic part runs once and only
    the dropout + output layer are repeated (identical in distribution to N full passes, N times
    cheaper). No module's train/eval mode is touched. ``mc_probabilities`` returns the N samples.

    Parameters at the defaults: 6,044,338 (identical to the public PyTorch reimplementation,
    SeisPolarity's ``RPNet``; ReLUs inside the inception modules add no parameters).

    Args:
        num_classes: 2 (paper) or more.
        input_length: samples (paper: 400); must be >= 8.
        attention_heads: heads of the self-attention (8; must divide 480).
        fc_units: hidden units of the classifier (paper: 128).
        dropout: the Monte-Carlo dropout rate (paper: 0.2).
        mc_samples: default number of stochastic passes of ``predict_proba`` (20).
        attention_residual: add the attention's output to the LSTM sequence (``h + attn(h)``, no
            extra parameters), as PPNet does. Without it the attention's near-uniform weights at
            initialisation average the 50 steps together and training stays at chance on the
            synthetic set (0.50 up/down validation accuracy after 125 steps of 32 at lr 3e-4 and at
            1e-3, against 0.83 with it, in our check); False gives the plain stack of the
            reimplementation.
        branch_relu: a ReLU after each convolution inside the inception modules (default, GoogLeNet's
            and the paper's module); False leaves them linear, as SeisPolarity 0.1.4's ``RPNet`` does
            (what its importer builds, with ``attention_residual=False``). No parameters either way.
    """

    #: the classification head, trainable under ``trainer.freeze=features``: FC 128 and the output layer
    head_prefixes = ("fc.", "out.")

    def __init__(self, num_classes: int = 2, input_length: int = 400, attention_heads: int = 8,
                 fc_units: int = 128, dropout: float = 0.2, mc_samples: int = 20,
                 attention_residual: bool = True, branch_relu: bool = True) -> None:
        super().__init__(num_classes, input_length, in_channels=1)
        if input_length < 8:
            raise ValueError(f"RPNet needs input_length >= 8, got {input_length}")
        self.dropout = float(dropout)
        self.mc_samples = int(mc_samples)
        if not isinstance(branch_relu, bool):
            raise ValueError(f"RPNet branch_relu must be true or false, got {branch_relu!r}")
        self.attention_residual = bool(attention_residual)
        self.branch_relu = branch_relu
        self.stem = nn.Sequential(nn.Conv1d(self.in_channels, 64, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                  nn.MaxPool1d(2))
        inc1 = _Inception(64, 64, 64, 96, 16, 32, 32, relu=branch_relu)
        inc2 = _Inception(inc1.out_channels, 128, 128, 192, 32, 96, 64, relu=branch_relu)
        self.inception = nn.Sequential(inc1, inc2, nn.MaxPool1d(2))
        width = inc2.out_channels
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.attention = nn.MultiheadAttention(width, attention_heads, batch_first=True)
        steps = ((input_length - 1) // 2 + 1) // 2 // 2
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(steps * width, fc_units), nn.ReLU(inplace=True))
        self.out = nn.Linear(fc_units, self.num_classes)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the Monte-Carlo dropout: (B, 1, L) -> (B, fc_units)."""
        x = self.fit_input(x)
        h = self.inception(self.stem(x)).transpose(1, 2)
        h, _ = self.lstm(h)
        a, _ = self.attention(h, h, h, need_weights=False)
        return self.fc(h + a if self.attention_residual else a)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.dropout(self._features(x), self.dropout, training=self.training))

    @torch.no_grad()
    def mc_probabilities(self, x: torch.Tensor, mc_samples: int | None = None) -> torch.Tensor:
        """``(N, B, C)`` class probabilities of N passes with the dropout active."""
        n = self.mc_samples if mc_samples is None else int(mc_samples)
        if n < 1:
            raise ValueError(f"mc_samples must be >= 1, got {n}")
        f = self._features(x).float()
        f = f.unsqueeze(0).expand(n, *f.shape)
        return torch.softmax(self.out(F.dropout(f, self.dropout, training=True)).float(), dim=-1)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, mc_samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Monte-Carlo dropout prediction: (mean probabilities (B, C), std of the predicted class's
        probability over the passes (B,))."""
        samples = self.mc_probabilities(x, mc_samples)
        mean = samples.mean(0)
        pred = mean.argmax(-1)
        picked = samples.gather(-1, pred.view(1, -1, 1).expand(samples.shape[0], -1, 1)).squeeze(-1)
        std = picked.std(0, unbiased=False) if samples.shape[0] > 1 else torch.zeros_like(pred, dtype=mean.dtype)
        return mean, std
