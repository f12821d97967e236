"""Predict first-motion polarities with a trained checkpoint.

    from seispolarity.inference import Predictor

    predictor = Predictor("outputs/train/runs/<run>/checkpoints/best.ckpt", device="auto", threshold=0.7)
    result = predictor.predict(waveforms)                      # numpy (N, L) or (N, C, L), P at the centre
    result = predictor.predict(waveforms, p_index=picks)       # P at given samples
    result = predictor.predict("scsn_test.hdf5", name="SCSN")  # any supported layout
    result = predictor.predict(stream, picks={"CI.PAS..HHZ": UTCDateTime(...)})   # ObsPy (optional)
    result.to_csv("picks.csv")

The model is rebuilt from the checkpoint's registry name and constructor arguments, the window
length and normalisation come from the checkpoint's ``data`` entry, and the label map from its
``label_map``; nothing else is needed. Predictions go through the same crop + normalise step as
``Trainer.evaluate`` (``prepare_batch`` without augmentation), so the probabilities are the same.

Abstention: with ``threshold`` a prediction whose probability is below it becomes 2 (unknown); with
``max_uncertainty`` (models with an uncertainty, e.g. RPNet's Monte-Carlo dropout) so does one whose
uncertainty is above it.
"""
from __future__ import annotations

import csv
import logging
import numbers
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .console import bar
from .data.augment import prepare_batch
from .data.dataset import WaveformDataset
from .data.labels import CLASS_NAMES, UNKNOWN, LabelError
from .models import model_from_description
from .models.base import PolarityModel
from .plain import to_plain
from .training.checkpoint import load_checkpoint
from .training.trainer import resolve_device

log = logging.getLogger("seispolarity.inference")

POLARITY_LETTERS = {0: "U", 1: "D", 2: "X"}
DEVICE_NAMES = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)", re.IGNORECASE)


@dataclass(repr=False)  # the generated repr prints every array: thousands of lines for a real file
class PredictionResult:
    """Per-trace predictions (arrays of length N, aligned).

    Attributes:
        predictions: (N,) int64 codes, 0 up / 1 down / 2 unknown, after abstention.
        probabilities: (N, num_classes) float32 softmax of the model's logits.
        probability: (N,) float32 probability of the most likely class.
        raw_predictions: (N,) int64 most likely class before abstention.
        uncertainty: (N,) float32 for models that estimate one (RPNet: std over MC-dropout passes of
            the predicted class's probability), else None.
        labels: (N,) int64 true codes when the data has labels (HDF5), else None.
        indices: (N,) int64 position of each trace in the input (dataset index, array row, pick number).
        metadata: per-trace extras (N,) arrays: ``event_id``, ``station``, ``snr`` ... from the data,
            or ``network``/``station``/``location``/``channel``/``p_time`` for ObsPy input.
        threshold / max_uncertainty: the abstention settings used.
    """

    predictions: np.ndarray
    probabilities: np.ndarray
    probability: np.ndarray
    raw_predictions: np.ndarray
    uncertainty: np.ndarray | None = None
    labels: np.ndarray | None = None
    indices: np.ndarray | None = None
    metadata: dict[str, np.ndarray] = field(default_factory=dict)
    threshold: float | None = None
    max_uncertainty: float | None = None

    def __len__(self) -> int:
        return int(len(self.predictions))

    def __repr__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        extras = [name for name in ("uncertainty", "labels") if getattr(self, name) is not None]
        return (f"PredictionResult({len(self)} traces: {counts}; probabilities {np.shape(self.probabilities)}"
                f"{''.join(', ' + name for name in extras)}; metadata {sorted(self.metadata) or 'none'}; "
                f"threshold={self.threshold}, max_uncertainty={self.max_uncertainty})")

    @property
    def polarity(self) -> np.ndarray:
        """Letters U (up) / D (down) / X (unknown) per trace."""
        return np.array([POLARITY_LETTERS[int(p)] for p in self.predictions], dtype="<U1")

    def counts(self) -> dict[str, int]:
        counts = np.bincount(self.predictions, minlength=3)
        return {CLASS_NAMES[i]: int(c) for i, c in enumerate(counts[:3])}

    def columns(self) -> list[str]:
        cols = ["index"] + [k for k, v in self.metadata.items() if np.asarray(v).ndim == 1]
        cols += ["prediction", "polarity", "probability"]
        cols += [f"p_{CLASS_NAMES[c]}" for c in range(self.probabilities.shape[1])]
        if self.uncertainty is not None:
            cols.append("uncertainty")
        if self.labels is not None:
            cols.append("label")
        return cols

    def rows(self) -> list[dict[str, Any]]:
        """One dict per trace (the CSV's rows, with Python values)."""
        cols = self.columns()
        indices = self.indices if self.indices is not None else np.arange(len(self))
        out = []
        for i in range(len(self)):
            row: dict[str, Any] = {"index": int(indices[i])}
            for k in cols:
                if k in self.metadata:
                    row[k] = to_plain(self.metadata[k][i])
            row["prediction"] = int(self.predictions[i])
            row["polarity"] = POLARITY_LETTERS[int(self.predictions[i])]
            row["probability"] = float(self.probability[i])
            for c in range(self.probabilities.shape[1]):
                row[f"p_{CLASS_NAMES[c]}"] = float(self.probabilities[i, c])
            if self.uncertainty is not None:
                row["uncertainty"] = float(self.uncertainty[i])
            if self.labels is not None:
                row["label"] = int(self.labels[i])
            out.append(row)
        return out

    def to_csv(self, path: str | os.PathLike) -> str:
        """Write one row per trace; probabilities with 6 decimals. Returns the path."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        cols = self.columns()
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            for row in self.rows():
                writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
        return path


class Predictor:
    """A trained model ready to label new traces.

    Args:
        checkpoint: path to any SeisPolarity checkpoint (``best.ckpt``, ``last.ckpt``, an imported
            one, ...), ``"pretrained:<name>"`` for packaged weights (``from_pretrained``), or a
            checkpoint dict already loaded. The preprocessing the weights expect (window, normalisation
            such as CFM's ``"cfm"``, sampling rate) comes from the checkpoint's ``data``.
        device: "auto" (cuda > mps > cpu), "cpu", "cuda", "cuda:1", "mps".
        batch_size: traces per forward pass.
        threshold: abstain (predict 2 unknown) when the top probability is below this.
        max_uncertainty: abstain when the model's uncertainty (if it has one) is above this.
        mc_samples: Monte-Carlo passes for models with MC dropout (default: the model's own).
    """

    def __init__(self, checkpoint: str | os.PathLike | Mapping[str, Any], device: str = "auto",
                 batch_size: int = 256, threshold: float | None = None, max_uncertainty: float | None = None,
                 mc_samples: int | None = None) -> None:
        # the arguments first: a typo fails at once, naming the argument, before any file is read
        self.batch_size = _checked("batch_size", batch_size, _integer, lambda v: v >= 1, "an integer >= 1")
        self.threshold = _optional("threshold", threshold, float, lambda v: 0.0 <= v <= 1.0,
                                   "a number between 0 and 1")
        self.max_uncertainty = _optional("max_uncertainty", max_uncertainty, float, lambda v: True, "a number")
        self.mc_samples = _optional("mc_samples", mc_samples, _integer, lambda v: v >= 1, "an integer >= 1")
        self.device = _device(device)
        if isinstance(checkpoint, Mapping):
            state, self.checkpoint_path = checkpoint, None
        else:
            self.checkpoint_path = os.fspath(checkpoint)
            state = load_checkpoint(self.checkpoint_path, map_location="cpu")
        described = state.get("model") or {}
        if not isinstance(described, Mapping) or "name" not in described:
            raise ValueError(f"{self.checkpoint_path or 'checkpoint'}: no model description (state['model'] with "
                             f"'name' and 'init_kwargs'); it was not written by a SeisPolarity Trainer")
        self.model: PolarityModel = model_from_description(described)
        self.model.load_state_dict(state["model_state_dict"])
        self.model.eval()
        self.model.to(self.device)
        data = dict(state.get("data") or {})
        self.input_length = int(self.model.input_length)
        self.window_length = max(int(data.get("window_length") or self.input_length), self.input_length)
        self.normalize = data.get("normalize", "peak")
        self.sampling_rate = float(data.get("sampling_rate") or 100.0)
        self.num_classes = int(self.model.num_classes)
        self.label_map = dict(state["label_map"]) if state.get("label_map") else None
        self.has_uncertainty = type(self.model).predict_proba is not PolarityModel.predict_proba
        self.run_config = state.get("run_config")

    @classmethod
    def from_pretrained(cls, name: str, **kwargs: Any) -> Predictor:
        """A Predictor of the weights packaged as ``name`` (``seispolarity.pretrained.available()``);
        ``kwargs`` as for the constructor (device, threshold, ...)."""
        from .training.checkpoint import PRETRAINED_PREFIX

        return cls(PRETRAINED_PREFIX + name, **kwargs)

    def __repr__(self) -> str:
        return (f"Predictor({self.model.registry_name or type(self.model).__name__}, classes={self.num_classes}, "
                f"input={self.model.in_channels}x{self.input_length} @ {self.sampling_rate:g} Hz, "
                f"normalize={self.normalize!r}, device={self.device}, threshold={self.threshold})")

    # -- one entry point ---------------------------------------------------------------------------
    def predict(self, data, p_index=None, name: str | None = None, picks=None, sampling_rate: float | None = None,
                **options: Any) -> PredictionResult:
        """Dispatch on the input: numpy array / torch tensor, HDF5 path (``name`` = layout),
        WaveformDataset, or ObsPy Stream (``picks`` = P times)."""
        if isinstance(data, WaveformDataset):
            return self.predict_dataset(data)
        if isinstance(data, (str, os.PathLike)):
            return self.predict_file(data, name=name or "flat", **options)
        if type(data).__name__ == "Stream" and hasattr(data, "traces"):
            if picks is None:
                raise ValueError("predicting an ObsPy Stream needs picks= (P times)")
            return self.predict_stream(data, picks, **options)
        return self.predict_arrays(data, p_index=p_index, sampling_rate=sampling_rate)

    # -- numpy -----------------------------------------------------------------------------------------
    def predict_arrays(self, waveforms, p_index=None, sampling_rate: float | None = None,
                       metadata: Mapping[str, Any] | None = None) -> PredictionResult:
        """Waveforms ``(N, L)``, ``(N, C, L)`` or one ``(L,)`` trace; P at ``p_index`` (scalar or (N,)
        samples; default the centre ``L // 2``). ``sampling_rate`` other than the checkpoint's is
        resampled (polyphase, anti-aliased)."""
        x = waveforms.detach().cpu().numpy() if isinstance(waveforms, torch.Tensor) else np.asarray(waveforms)
        if x.ndim == 1:
            x = x[None, None, :]
        elif x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3:
            raise ValueError(f"expected waveforms (N, L), (N, C, L) or (L,), got shape {x.shape}")
        n, channels, length = x.shape
        if channels != self.model.in_channels:
            raise ValueError(f"the model takes {self.model.in_channels} channel(s), the waveforms have {channels}; "
                             f"pass the vertical component only")
        p = _p_samples(p_index, n, length)
        rate = _optional("sampling_rate", sampling_rate, float, lambda v: v > 0, "a number > 0 (Hz)")
        if rate is not None and abs(rate - self.sampling_rate) > 1e-6:
            x, p = _resample(x, p, rate, self.sampling_rate)
        p = np.round(p).astype(np.int64)
        parts = []
        progress = bar(n, "predicting", unit="trace", enabled=n > self.batch_size)
        for a in range(0, n, self.batch_size):
            parts.append(self._forward(torch.from_numpy(_windows(x[a:a + self.batch_size], p[a:a + self.batch_size],
                                                                 self.input_length))))
            if progress is not None:
                progress.update(min(self.batch_size, n - a))
        if progress is not None:
            progress.close()
        return self._result(parts, n, indices=np.arange(n), metadata=metadata)

    # -- HDF5 / datasets ---------------------------------------------------------------------------------
    def predict_file(self, path: str | os.PathLike, name: str = "flat", label_map=None, **dataset_options: Any
                     ) -> PredictionResult:
        """Every trace of a file (flat, SCSN, synthetic) or folder (INSTANCE, PNW, TXED, DiTing, ...)
        in any layout ``WaveformDataset`` reads; ``dataset_options`` go to it (components, filters, ...).
        Labels are read with ``label_map`` (default: the checkpoint's, else the layout's)."""
        return self.predict_dataset(self.open_file(path, name=name, label_map=label_map, **dataset_options))

    def open_file(self, path: str | os.PathLike, name: str = "flat", label_map=None, **dataset_options: Any
                  ) -> WaveformDataset:
        """The WaveformDataset ``predict_file`` reads (windows, normalisation and labels as it says)."""
        kwargs = dict(window_length=self.window_length, max_shift=0, normalize=self.normalize, unknown="keep",
                      preload=False)
        kwargs.update(dataset_options)
        if label_map is not None or not self.label_map:
            return WaveformDataset(path, name=name, label_map=label_map, **kwargs)
        try:
            return WaveformDataset(path, name=name, label_map=self.label_map, **kwargs)
        except LabelError as exc:  # the training set's map does not fit this file: its own map
            # said only once this worked: if the layout's map fails too, its error alone is reported
            dataset = WaveformDataset(path, name=name, label_map=None, **kwargs)
            log.info("%s: labels read with the %s layout's own label map (the checkpoint's, from its training "
                     "data, does not cover this file's labels; nothing is wrong with the file)", path, name)
            log.debug("the checkpoint's label map on %s: %s", path, exc)
            return dataset

    def predict_dataset(self, dataset: WaveformDataset, indices: Sequence[int] | np.ndarray | None = None
                        ) -> PredictionResult:
        """Traces of a WaveformDataset (its raw windows, cropped and normalised as the checkpoint was
        trained, whatever the dataset's own ``normalize``)."""
        if dataset.window_length + 2 * dataset.max_shift < self.input_length:
            raise ValueError(f"the dataset's windows ({dataset.window_length} samples) are shorter than the model "
                             f"input ({self.input_length})")
        if abs(float(dataset.sampling_rate) - self.sampling_rate) > 1e-6:
            raise ValueError(f"the data is sampled at {dataset.sampling_rate:g} Hz, "
                             f"the model at {self.sampling_rate:g} Hz")
        idx = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
        parts = []
        progress = bar(len(idx), "predicting", unit="trace", enabled=len(idx) > self.batch_size)
        for a in range(0, len(idx), self.batch_size):
            x = dataset.raw_windows(torch.from_numpy(idx[a:a + self.batch_size]))
            parts.append(self._forward(x))
            if progress is not None:
                progress.update(len(x))
        if progress is not None:
            progress.close()
        metadata = {k: np.asarray(v)[idx] for k, v in dataset.metadata.items()}
        return self._result(parts, len(idx), indices=idx, labels=dataset.labels.numpy()[idx], metadata=metadata)

    # -- ObsPy -------------------------------------------------------------------------------------------
    def predict_stream(self, stream, picks, event_id: str | None = None, component: str = "Z") -> PredictionResult:
        """Traces of an ObsPy Stream at given P times.

        ``picks``: a mapping ``trace id -> P time`` (``"NET.STA.LOC.CHA"``, or ``"NET.STA"`` to take the
        station's ``component`` channel), a list of ``(trace id, time)`` pairs or of ObsPy ``Pick``
        objects, or an ObsPy ``Event`` (its P picks; ``event_id`` defaults to its resource id).
        Traces at another sampling rate are resampled; a pick outside its trace raises.
        """
        from obspy import UTCDateTime

        if hasattr(picks, "picks") and hasattr(picks, "resource_id"):  # an Event
            event_id = event_id if event_id is not None else str(picks.resource_id).rsplit("/", 1)[-1]
            picks = [p for p in picks.picks if str(p.phase_hint or "P").upper().startswith("P")]
        pairs = list(picks.items()) if isinstance(picks, Mapping) else [
            (_pick_id(p), p.time) if hasattr(p, "waveform_id") else tuple(p) for p in picks]
        rows, p_idx, meta = [], [], {k: [] for k in ("event_id", "network", "station", "location", "channel", "p_time")}
        for trace_id, time in pairs:
            trace = _select_trace(stream, str(trace_id), component)
            stats = trace.stats
            data = np.asarray(trace.data, dtype=np.float64)
            p = (UTCDateTime(time) - stats.starttime) * float(stats.sampling_rate)
            if not 0 <= p < len(data):
                raise ValueError(f"{trace.id}: P time {UTCDateTime(time)} is outside the trace "
                                 f"({stats.starttime} - {stats.endtime})")
            xw, pw = data[None, None, :], np.array([p])
            if abs(float(stats.sampling_rate) - self.sampling_rate) > 1e-6:
                xw, pw = _resample(xw, pw, float(stats.sampling_rate), self.sampling_rate)
            rows.append(_windows(xw.astype(np.float32), np.round(pw).astype(np.int64), self.input_length)[0])
            p_idx.append(int(round(pw[0])))
            for key, value in (("event_id", "" if event_id is None else str(event_id)), ("network", stats.network),
                               ("station", stats.station), ("location", stats.location), ("channel", stats.channel),
                               ("p_time", str(UTCDateTime(time)))):
                meta[key].append(value)
        if not rows:
            raise ValueError("no picks to predict")
        x = np.stack(rows)
        parts = [self._forward(torch.from_numpy(x[a:a + self.batch_size])) for a in range(0, len(x), self.batch_size)]
        if event_id is None:
            meta.pop("event_id")
        return self._result(parts, len(x), indices=np.arange(len(x)),
                            metadata={k: np.asarray(v) for k, v in meta.items()})

    # -- core --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw windows ``(B, C, >= input_length)``, P at the centre -> (probabilities, uncertainty) on
        the CPU, through ``prepare_batch`` as ``Trainer.evaluate`` does (centred crop, normalisation)."""
        x = x.to(self.device, dtype=torch.float32)
        no_labels = torch.zeros(len(x), dtype=torch.long, device=x.device)  # prepare_batch carries labels along
        x, _, _ = prepare_batch({"waveforms": x, "labels": no_labels}, self.input_length, self.normalize)
        probs = torch.softmax(self.model(x).float(), dim=1)
        unc = None
        if self.has_uncertainty:
            kwargs = {"mc_samples": self.mc_samples} if self.mc_samples is not None else {}
            _, unc = self.model.predict_proba(x, **kwargs)
            unc = unc.float().cpu() if unc is not None else None
        return probs.cpu(), unc

    def _result(self, parts, n: int, indices=None, labels=None, metadata=None) -> PredictionResult:
        k = self.num_classes
        probs = torch.cat([p for p, _ in parts]).numpy() if parts else np.zeros((0, k), np.float32)
        uncs = [u for _, u in parts if u is not None]
        unc = torch.cat(uncs).numpy() if uncs and len(uncs) == len(parts) else None
        raw = probs.argmax(axis=1).astype(np.int64) if n else np.zeros(0, np.int64)
        top = probs.max(axis=1) if n else np.zeros(0, np.float32)
        pred = raw.copy()
        if self.threshold is not None:
            pred[top < self.threshold] = UNKNOWN
        if self.max_uncertainty is not None and unc is not None:
            pred[unc > self.max_uncertainty] = UNKNOWN
        meta = {key: np.asarray(v) for key, v in (metadata or {}).items()}
        return PredictionResult(predictions=pred, probabilities=probs.astype(np.float32),
                                probability=top.astype(np.float32), raw_predictions=raw, uncertainty=unc,
                                labels=labels, indices=indices, metadata=meta,
                                threshold=self.threshold, max_uncertainty=self.max_uncertainty)


def _integer(value: Any) -> int:
    """``value`` as an int; a float, bool or text is refused (``int()`` would cut 2.5 to 2, "7" to 7)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(value)
    return int(value)


def _checked(key: str, value: Any, cast, ok, expected: str):
    """``cast(value)`` if ``ok`` of it; otherwise one ValueError naming the argument and what it takes."""
    try:
        converted = cast(value)
    except (TypeError, ValueError):
        converted = None
    if converted is None or isinstance(value, bool) or not ok(converted):
        raise ValueError(f"{key}={value!r}: expected {expected}")
    return converted


def _optional(key: str, value: Any, cast, ok, expected: str):
    return None if value is None else _checked(key, value, cast, ok, expected)


def _device(name: Any) -> torch.device:
    """``resolve_device`` of a name it knows; torch's own parser would list 20 device types."""
    text = str(name)
    if not DEVICE_NAMES.fullmatch(text):
        raise ValueError(f"device={text!r}: expected auto, cpu, cuda, cuda:N or mps")
    return resolve_device(text)


def _p_samples(p_index: Any, n: int, length: int) -> np.ndarray:
    """P sample of each of ``n`` traces of ``length`` samples (float64): ``p_index`` (one for all or
    one per trace), default the centre; a P outside the trace is refused, as the HDF5 readers do."""
    if p_index is None:
        return np.full(n, length // 2, dtype=np.float64)
    try:
        p = np.asarray(p_index, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"p_index={p_index!r}: expected a sample number, or one per trace") from None
    p = np.full(n, p[0]) if p.size == 1 else p
    if len(p) != n:
        raise ValueError(f"p_index has {len(p)} entries for {n} waveforms")
    bad = np.flatnonzero(~((p >= 0) & (p <= length - 1)))  # NaN and Inf too
    if len(bad):
        row = "" if np.ndim(p_index) == 0 else f" (row {bad[0]})"
        raise ValueError(f"p_index={_plain_number(p[bad[0]])}{row} is outside the trace of {length} samples "
                         f"(0..{length - 1})")
    return p


def _plain_number(value: float) -> Any:
    return int(value) if np.isfinite(value) and float(value).is_integer() else float(value)


def _windows(x: np.ndarray, p: np.ndarray, length: int) -> np.ndarray:
    """``length`` samples with P at ``length // 2`` (zeros outside the trace), float32 (B, C, length)."""
    start = p - length // 2
    idx = start[:, None] + np.arange(length)
    valid = (idx >= 0) & (idx < x.shape[-1])
    gather = np.clip(idx, 0, x.shape[-1] - 1)[:, None, :].repeat(x.shape[1], axis=1)
    out = np.take_along_axis(np.asarray(x, dtype=np.float32), gather, axis=2)
    return (out * valid[:, None, :]).astype(np.float32)


def _resample(x: np.ndarray, p: np.ndarray, rate_in: float, rate_out: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy.signal import resample_poly

    ratio = Fraction(rate_out / rate_in).limit_denominator(1000)
    y = resample_poly(np.asarray(x, dtype=np.float64), ratio.numerator, ratio.denominator, axis=-1)
    return y.astype(np.float32), np.asarray(p, dtype=np.float64) * rate_out / rate_in


def _pick_id(pick) -> str:
    w = pick.waveform_id
    return ".".join([w.network_code or "", w.station_code or "", w.location_code or "", w.channel_code or ""])


def _select_trace(stream, trace_id: str, component: str):
    parts = trace_id.split(".")
    if len(parts) == 4:
        net, sta, loc, cha = parts
        found = stream.select(network=net, station=sta, location=loc, channel=cha)
        if not len(found) and not cha:
            found = stream.select(network=net, station=sta, location=loc, component=component)
    elif len(parts) == 2:
        found = stream.select(network=parts[0], station=parts[1], component=component)
    else:
        raise ValueError(f"trace id {trace_id!r}: expected NET.STA.LOC.CHA or NET.STA")
    if not len(found):
        raise ValueError(f"no trace {trace_id!r} (component {component}) in the stream")
    if len(found) > 1:
        found = found.copy().merge(fill_value=0)
        if len(found) > 1:
            raise ValueError(f"{trace_id!r} matches several traces: {[t.id for t in found]}")
    return found[0]


def predict(checkpoint: str | os.PathLike, data, **kwargs: Any) -> PredictionResult:
    """One call: ``predict("best.ckpt", waveforms_or_path, threshold=0.7, name="SCSN", ...)``."""
    init = {k: kwargs.pop(k) for k in ("device", "batch_size", "threshold", "max_uncertainty", "mc_samples")
            if k in kwargs}
    return Predictor(checkpoint, **init).predict(data, **kwargs)


__all__ = ["Predictor", "PredictionResult", "predict", "POLARITY_LETTERS"]
