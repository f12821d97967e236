"""DiTingMotion: dense combined-convolution blocks with fused side outputs (Zhao et al. 2023)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .base import PolarityModel, register_model


class _CombConv(nn.Module):
    """Parallel convolutions (kernels 3, 3, 5, 5; ReLU each), concatenated with their input."""

    def __init__(self, in_channels: int, filters: int, kernels: tuple[int, ...] = (3, 3, 5, 5)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv1d(in_channels, filters, k, padding="same") for k in kernels)
        self.out_channels = in_channels + len(kernels) * filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(b(x)) for b in self.branches] + [x], dim=1)


class _DenseBlock(nn.Module):
    """Two ``[combined conv -> dropout -> conv k3 to `filters` -> ReLU]`` stages; the block's input is
    concatenated to the result (dense connection) and, optionally, max-pooled by 2."""

    def __init__(self, in_channels: int, filters: int, dropout: float, pool: bool) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        cin = in_channels
        for _ in range(2):
            comb = _CombConv(cin, filters)
            stages += [comb, nn.Dropout(dropout), nn.Conv1d(comb.out_channels, filters, 3, padding="same"),
                       nn.ReLU(inplace=True)]
            cin = filters
        self.stages = nn.Sequential(*stages)
        self.pool = nn.MaxPool1d(2) if pool else nn.Identity()
        self.out_channels = in_channels + filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.cat([x, self.stages(x)], dim=1))


class _SideBranch(nn.Module):
    """Hidden layer of a side output: flattened side features -> FC `hidden` -> ReLU -> logits."""

    def __init__(self, in_features: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True))
        self.out = nn.Linear(hidden, n_out)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(f)
        return h, self.out(h)


def _log_mean_softmax(logits: list[torch.Tensor]) -> torch.Tensor:
    """log of the average of the heads' softmax probabilities (a valid logit vector)."""
    stacked = torch.stack([F.log_softmax(o.float(), dim=-1) for o in logits], dim=0)
    return torch.logsumexp(stacked, dim=0) - math.log(len(logits))


READOUTS = ("mean", "fuse")
DIFFERENCES = ("forward", "backward")
SCALES = ("peak", "std")


@register_model("diting_motion")
class DiTingMotion(PolarityModel):
    """DiTingMotion first-motion polarity + onset clarity classifier.

    Paper: Zhao, M., Xiao, Z., Zhang, M., Yang, Y., Tang, L. & Chen, S. (2023). DiTingMotion: a
    deep-learning first-motion-polarity classifier and its application to focal mechanism inversion.
    *Frontiers in Earth Science* 11, 1103914.

    Input: ``(B, 1, 128)`` raw vertical trace, 1.28 s at 100 Hz with P at the centre (longer windows
    are centre-cropped). The model builds the paper's two-channel input itself: the trace (demeaned and
    divided by its peak amplitude when ``normalize``) and the sign of its first difference
    (``sign(x[i+1] - x[i])``, a 0 appended to keep the length). Classes: 3 (0 up, 1 down, 2 unknown),
    plus an auxiliary onset clarity (0 impulsive, 1 emergent, 2 unknown).

    Architecture: five dense blocks, each two ``[combined conv (parallel k3/k3/k5/k5, 8 filters each,
    ReLU, concatenated with their input) -> dropout -> conv k3 to 8 -> ReLU]`` stages whose output is
    concatenated to the block input (channels 2 -> 10 -> 18 -> 26 -> 34 -> 42) and max-pooled by 2
    (blocks 1-4; lengths 128 -> 64 -> 32 -> 16 -> 8 -> 8). Side outputs on blocks 3, 4, 5: conv k3 to
    2 channels -> ReLU -> flatten (32, 16, 16 features), shared by a polarity and a clarity branch of
    ``FC 8 -> ReLU -> logits`` each. Fuse layers: the three 8-unit hidden vectors concatenated (24) ->
    FC 8 -> ReLU -> logits, separately for polarity and clarity. As in the paper the final prediction is
    the average of the four heads (three side outputs + fuse): ``classify`` returns
    ``log(mean_k softmax(o_k))``, whose softmax is that average.

    Auxiliary loss (``forward_with_aux``; ``aux_targets = ("labels", "clarity")``): the paper's deep
    supervision, i.e. the mean cross-entropy of the four polarity heads against ``targets["labels"]``
    (times ``side_loss_weight``) plus the mean cross-entropy of the four clarity heads against
    ``targets["clarity"]`` (``ignore_index=-1``; times ``clarity_loss_weight``). Either part is used when
    its key is present; ``None`` when neither is. ``clarity(x)`` returns clarity probabilities.

    Parameters at the defaults: 30,146 (identical to the public PyTorch reimplementation, SeisPolarity's
    ``DitingMotion``).

    Args:
        num_classes: polarity classes (paper: 3).
        input_length: samples (paper: 128); must be >= 16.
        filters: filters per parallel convolution and per stage output ("growth"; paper: 8).
        dropout: dropout after each combined convolution (0.2).
        num_clarity_classes: clarity classes (paper: 3, I/E/K).
        side_channels: channels of the side-output convolutions (2).
        hidden_units: width of the side and fuse hidden layers (8).
        normalize: demean and peak-normalise each trace before building the two channels.
        side_loss_weight, clarity_loss_weight: weights of the two auxiliary parts.
        readout: ``"mean"`` (default, the paper: the average of the four polarity heads'
            probabilities) or ``"fuse"`` (the fuse head alone, as SeisPolarity 0.1.4 predicts);
            the same for ``clarity``. Training's deep supervision is the same either way.
        difference: the second input channel, ``"forward"`` (default: ``sign(x[i+1] - x[i])``, a 0
            last) or ``"backward"`` (``sign(x[i] - x[i-1])``, a 0 first: 0.1.4's
            ``DifferentialFeatures``).
        scale: with ``normalize``, divide the demeaned trace by its peak absolute amplitude
            (``"peak"``, default) or by its standard deviation (``"std"``, population, plus 1e-12:
            0.1.4's ``Normalize(amp_norm_type="std")`` of its DiTingMotion training). The 0.1.4
            importer builds ``readout="fuse", difference="backward", scale="std"``.
    """

    #: the classification head, trainable under ``trainer.freeze=features``: the polarity side branches and their fusion
    head_prefixes = ("polarity_sides.", "polarity_fuse.")

    aux_targets = ("labels", "clarity")

    def __init__(self, num_classes: int = 3, input_length: int = 128, filters: int = 8, dropout: float = 0.2,
                 num_clarity_classes: int = 3, side_channels: int = 2, hidden_units: int = 8,
                 normalize: bool = True, side_loss_weight: float = 1.0, clarity_loss_weight: float = 1.0,
                 readout: str = "mean", difference: str = "forward", scale: str = "peak") -> None:
        super().__init__(num_classes, input_length, in_channels=1)
        if input_length < 16:
            raise ValueError(f"DiTingMotion needs input_length >= 16, got {input_length}")
        for name, value, allowed in (("readout", readout, READOUTS), ("difference", difference, DIFFERENCES),
                                     ("scale", scale, SCALES)):
            if value not in allowed:
                raise ValueError(f"DiTingMotion {name} must be one of {', '.join(allowed)}, got {value!r}")
        self.readout, self.difference, self.scale = readout, difference, scale
        self.num_clarity_classes = int(num_clarity_classes)
        self.normalize = bool(normalize)
        self.side_loss_weight = float(side_loss_weight)
        self.clarity_loss_weight = float(clarity_loss_weight)

        blocks: list[_DenseBlock] = []
        cin, length, lengths, channels = 2, input_length, [], []
        for i in range(5):
            block = _DenseBlock(cin, filters, dropout, pool=i < 4)
            blocks.append(block)
            cin = block.out_channels
            length = length // 2 if i < 4 else length
            lengths.append(length)
            channels.append(cin)
        self.blocks = nn.ModuleList(blocks)
        self.side_blocks = (2, 3, 4)  # blocks 3, 4, 5
        self.side_convs = nn.ModuleList(
            nn.Conv1d(channels[i], side_channels, 3, padding="same") for i in self.side_blocks)
        feats = [side_channels * lengths[i] for i in self.side_blocks]
        self.polarity_sides = nn.ModuleList(_SideBranch(f, hidden_units, self.num_classes) for f in feats)
        self.clarity_sides = nn.ModuleList(_SideBranch(f, hidden_units, self.num_clarity_classes) for f in feats)
        fuse_in = hidden_units * len(feats)
        self.polarity_fuse = _SideBranch(fuse_in, hidden_units, self.num_classes)
        self.clarity_fuse = _SideBranch(fuse_in, hidden_units, self.num_clarity_classes)

    # -- pieces ---------------------------------------------------------------------------------
    def two_channel_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, L) trace -> (B, 2, L): [trace, sign of its first difference (a 0 appended for
        ``difference="forward"``, prepended for ``"backward"``)]."""
        if self.normalize:
            x = x - x.mean(dim=-1, keepdim=True)
            if self.scale == "peak":
                x = x / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12)
            else:
                x = x / (x.std(dim=-1, keepdim=True, unbiased=False) + 1e-12)
        diff_sign = torch.sign(torch.diff(x, dim=-1))
        return torch.cat([x, F.pad(diff_sign, (0, 1) if self.difference == "forward" else (1, 0))], dim=1)

    def _readout(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """The prediction's logits from the four heads: log of their mean softmax, or the fuse head's."""
        return _log_mean_softmax(logits) if self.readout == "mean" else logits[-1]

    def _heads(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """All polarity and clarity heads' logits: ([side3, side4, side5, fuse], same for clarity)."""
        h = self.two_channel_input(self.fit_input(x))
        outs = []
        for block in self.blocks:
            h = block(h)
            outs.append(h)
        pol_hidden, pol_logits, cla_hidden, cla_logits = [], [], [], []
        for conv, pol, cla, i in zip(self.side_convs, self.polarity_sides, self.clarity_sides, self.side_blocks):
            f = F.relu(conv(outs[i])).flatten(1)
            hp, op = pol(f)
            hc, oc = cla(f)
            pol_hidden.append(hp)
            pol_logits.append(op)
            cla_hidden.append(hc)
            cla_logits.append(oc)
        pol_logits.append(self.polarity_fuse(torch.cat(pol_hidden, dim=1))[1])
        cla_logits.append(self.clarity_fuse(torch.cat(cla_hidden, dim=1))[1])
        return pol_logits, cla_logits

    # -- public API -----------------------------------------------------------------------------
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        pol, _ = self._heads(x)
        return self._readout(pol)

    @torch.no_grad()
    def clarity(self, x: torch.Tensor) -> torch.Tensor:
        """Onset clarity probabilities ``(B, num_clarity_classes)`` (0 impulsive, 1 emergent, 2 unknown)."""
        _, cla = self._heads(x)
        return _log_mean_softmax(cla).exp() if self.readout == "mean" else torch.softmax(cla[-1].float(), dim=-1)

    def forward_with_aux(self, x: torch.Tensor, targets: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        pol, cla = self._heads(x)
        logits = self._readout(pol)
        targets = targets or {}
        parts = []
        labels = targets.get("labels")
        if labels is not None:
            labels = torch.as_tensor(labels, device=logits.device).reshape(-1).long()
            parts.append(self.side_loss_weight
                         * torch.stack([F.cross_entropy(o.float(), labels, ignore_index=-1) for o in pol]).mean())
        clarity = targets.get("clarity")
        if clarity is not None:
            clarity = torch.as_tensor(clarity, device=logits.device).reshape(-1).long()
            valid = clarity >= 0
            # mean over the rows that have a clarity label; a graph-connected zero when none has one
            per_head = [(F.cross_entropy(o.float(), clarity.clamp(min=0), reduction="none") * valid).sum()
                        / valid.sum().clamp(min=1) for o in cla]
            parts.append(self.clarity_loss_weight * torch.stack(per_head).mean())
        if not parts:
            return logits, None
        return logits, sum(parts)
