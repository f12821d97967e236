"""EQPolarity: a compact convolutional transformer for first motions (Chen et al. 2024)."""
from __future__ import annotations

import torch
from torch import nn

from .base import PolarityModel, register_model


class _DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample while training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class _TransformerBlock(nn.Module):
    """Pre-norm block: x + DropPath(MHA(LN(x))); x + DropPath(MLP(LN(x))), MLP = 2 x [Linear, GELU, Dropout]."""

    def __init__(self, dim: int, heads: int, mlp_units: tuple[int, ...], dropout: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        mlp: list[nn.Module] = []
        cin = dim
        for units in mlp_units:
            mlp += [nn.Linear(cin, units), nn.GELU(), nn.Dropout(dropout)]
            cin = units
        if cin != dim:
            raise ValueError("the last MLP width must equal projection_dim (residual connection)")
        self.mlp = nn.Sequential(*mlp)
        self.drop_path = _DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.drop_path(self.attn(h, h, h, need_weights=False)[0])
        return x + self.drop_path(self.mlp(self.norm2(x)))


@register_model("eqpolarity")
class EQPolarity(PolarityModel):
    """EQPolarity, a compact convolutional transformer (CCT) for P first-motion polarity.

    Paper: Chen, Y., Saad, O. M., Savvaidis, A., et al. (2024). Deep learning for P-wave first-motion
    polarity determination and its application in focal mechanism inversion. *IEEE Transactions on
    Geoscience and Remote Sensing* 62.

    Input: ``(B, 1, 600)`` -- 6 s at 100 Hz, P at the centre (longer windows are centre-cropped).
    Classes: 2 (0 up, 1 down).

    Architecture: convolutional tokenizer of two ``[conv k4 stride 1 pad 1 (200 channels) -> ReLU ->
    max-pool k3 stride 2 pad 1]`` blocks (600 samples -> 150 tokens of width 200; no positional
    embedding, as in the original), four pre-norm transformer blocks (4-head self-attention, MLP
    200-200 with GELU, dropout 0.2, stochastic depth rising linearly 0 -> 0.1), a final LayerNorm,
    flatten (150 x 200), dropout and a linear output layer.

    Output head: the paper ends in one sigmoid unit. With ``num_classes == 2`` this model keeps that
    single score ``z`` (a linear layer to one unit, so the parameter count is the paper's) and returns
    the two logits ``(z/2, -z/2)``; softmax over them equals ``(sigmoid(z), 1 - sigmoid(z))``, i.e.
    ``sigmoid(z)`` is P(up), so the usual cross-entropy is exactly the paper's binary cross-entropy.
    With ``num_classes > 2`` the head is an ordinary linear layer to ``num_classes`` logits.

    Parameters at the defaults: 1,159,601 at 600 samples (identical to the public PyTorch
    reimplementation, SeisPolarity's ``EQPolarityCCT(input_length=600)``).

    Args:
        num_classes: 2 (paper) or more.
        input_length: samples (paper: 600); must be >= 4.
        projection_dim: tokenizer channels = token width (paper: 200).
        num_heads: attention heads (paper: 4).
        transformer_layers: transformer blocks (paper: 4).
        dropout: dropout in attention, MLPs and before the output layer (paper: 0.2).
        stochastic_depth: the largest drop-path rate (paper: 0.1).
    """

    #: the classification head, trainable under ``trainer.freeze=features``: the output layer after the transformer
    head_prefixes = ("head.",)

    def __init__(self, num_classes: int = 2, input_length: int = 600, projection_dim: int = 200,
                 num_heads: int = 4, transformer_layers: int = 4, dropout: float = 0.2,
                 stochastic_depth: float = 0.1) -> None:
        super().__init__(num_classes, input_length, in_channels=1)
        if input_length < 4:
            raise ValueError(f"EQPolarity needs input_length >= 4, got {input_length}")
        tok: list[nn.Module] = []
        cin = self.in_channels
        n_tokens = input_length
        for _ in range(2):
            tok += [nn.Conv1d(cin, projection_dim, kernel_size=4, stride=1, padding=1), nn.ReLU(inplace=True),
                    nn.MaxPool1d(kernel_size=3, stride=2, padding=1)]
            cin = projection_dim
            n_tokens = (n_tokens - 1 - 1) // 2 + 1  # conv: L - 1; pool: (L' - 1) // 2 + 1
        self.tokenizer = nn.Sequential(*tok)
        self.n_tokens = n_tokens
        rates = torch.linspace(0, stochastic_depth, transformer_layers).tolist() if transformer_layers else []
        self.blocks = nn.Sequential(*[
            _TransformerBlock(projection_dim, num_heads, (projection_dim, projection_dim), dropout, r)
            for r in rates])
        self.norm = nn.LayerNorm(projection_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(n_tokens * projection_dim, 1 if self.num_classes == 2 else self.num_classes)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fit_input(x)
        h = self.tokenizer(x).transpose(1, 2)  # (B, tokens, dim)
        h = self.norm(self.blocks(h))
        out = self.head(self.dropout(h.flatten(1)))
        if self.num_classes == 2:
            out = torch.cat([0.5 * out, -0.5 * out], dim=1)
        return out
