"""Evaluation reports: what a seismologist reads after a test or ``train=false`` run.

``write_report(run_dir, trainer, dataset, metrics, history)`` takes the output of
``Trainer.evaluate(dataset, return_predictions=True)`` and adds, in the run folder:

- ``metrics.json``'s ``test`` entry (returned, the runner writes it): accuracy by SNR, magnitude and
  distance bins (where the data has those metadata), and the same metrics for the classical
  first-break baseline (``seispolarity.baselines.first_break_polarity``) on the same windows;
- ``report.md``: summary, per-class precision / recall / F1 / support, confusion matrices, the
  bin tables, network next to baseline;
- ``test_predictions.csv``: one row per trace (index, label, prediction, probabilities, baseline,
  metadata);
- PNGs (``confusion_matrix.png``, ``training_curves.png``, ``accuracy_vs_snr.png`` ...) when
  matplotlib is importable (the ``plots`` extra; ``SEISPOLARITY_NO_PLOTS=1`` turns them off), and the
  same pictures plus the hyperparameters with their final metrics in TensorBoard.

The pieces are usable on their own: ``bin_metrics`` (accuracy per bin of any per-trace value),
``prediction_metrics`` (the metrics of ``Trainer.evaluate`` from arrays), ``baseline_on_dataset``,
``render_markdown`` and the ``plot_*`` functions (each returns a matplotlib Figure).
"""
from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .data.labels import CLASS_NAMES, DOWN, UP
from .training.metrics import confusion_matrix, metrics_from_confusion

log = logging.getLogger("seispolarity.reports")

PREDICTION_KEYS = ("predictions", "probabilities", "labels", "indices")
#: metadata key -> (title, unit) of the bin tables
BIN_KEYS = {"snr": ("SNR", "dB"), "magnitude": ("Magnitude", ""), "distance": ("Distance", "km")}
NO_PLOTS_ENV = "SEISPOLARITY_NO_PLOTS"


@dataclass
class ReportConfig:
    """Options of the evaluation report (the ``report`` config node).

    Attributes:
        enabled: write the report at all (metrics.json keeps the plain test metrics without it).
        snr_bins / magnitude_bins / distance_bins: bin edges; values below the first edge and at or
            above the last form two open-ended bins. SNR in dB, distance in km.
        baseline: score the first-break baseline on the same windows.
        baseline_params: keyword arguments of ``first_break_polarity`` (k, noise_window, ...).
        plots: PNG figures (needs matplotlib; silently text-only without it).
        tensorboard: figures and hparams in the run's TensorBoard folder.
        save_predictions: ``test_predictions.csv`` with one row per trace.
    """

    enabled: bool = True
    snr_bins: list[float] = field(default_factory=lambda: [0.0, 5.0, 10.0, 20.0, 30.0, 40.0])
    magnitude_bins: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 4.0, 5.0])
    distance_bins: list[float] = field(default_factory=lambda: [10.0, 25.0, 50.0, 100.0, 200.0])
    baseline: bool = True
    baseline_params: dict[str, Any] = field(default_factory=dict)
    plots: bool = True
    tensorboard: bool = True
    save_predictions: bool = True

    def __post_init__(self) -> None:
        for name in ("snr_bins", "magnitude_bins", "distance_bins"):
            edges = [float(e) for e in (getattr(self, name) or [])]
            if any(b <= a for a, b in zip(edges, edges[1:])):
                raise ValueError(f"report.{name}={edges}: bin edges must increase strictly")
            setattr(self, name, edges)
        self.baseline_params = dict(self.baseline_params or {})

    @classmethod
    def from_any(cls, options: ReportConfig | Mapping[str, Any] | None) -> ReportConfig:
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        values = {str(k): v for k, v in dict(options).items() if not str(k).startswith("_")}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"report options {unknown} unknown; known: {sorted(known)}")
        return cls(**values)

    def edges(self, key: str) -> list[float]:
        return list(getattr(self, f"{key}_bins", []) or [])


# -- numbers ---------------------------------------------------------------------------------------
def prediction_metrics(labels: np.ndarray, predictions: np.ndarray, num_classes: int = 3) -> dict[str, Any]:
    """The metrics of ``Trainer.evaluate`` from per-trace arrays (labels the model cannot output,
    i.e. unknown for a two-class model, are left out and counted under ``excluded_unknown``)."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    k = max(int(num_classes), int(predictions.max(initial=0)) + 1)
    keep = labels < num_classes
    cm = confusion_matrix(torch.from_numpy(labels[keep]), torch.from_numpy(predictions[keep]), k)
    out = metrics_from_confusion(cm, CLASS_NAMES[:k])
    out["excluded_unknown"] = int((~keep).sum())
    return out


def bin_edges(edges: Sequence[float]) -> list[tuple[float, float, str]]:
    """``[e0, ..., en]`` -> ``(-inf, e0), [e0, e1), ..., [en, inf)`` as ``(low, high, label)``."""
    edges = [float(e) for e in edges]
    if not edges:
        return [(-math.inf, math.inf, "all")]
    out = [(-math.inf, edges[0], f"< {_num(edges[0])}")]
    out += [(a, b, f"{_num(a)} to {_num(b)}") for a, b in zip(edges, edges[1:])]
    out.append((edges[-1], math.inf, f">= {_num(edges[-1])}"))
    return out


def bin_metrics(values: np.ndarray, labels: np.ndarray, predictions: np.ndarray, edges: Sequence[float],
                baseline: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Accuracy (and up/down accuracy) per bin of ``values``; the same for ``baseline`` predictions.

    A bin holds the traces with ``low <= value < high``; traces whose value is NaN form an extra
    ``n/a`` bin (only when there are any). ``accuracy`` is None for an empty bin; ``updown_accuracy``
    is the share of the bin's true up/down traces predicted with the right sign (None without any).
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    if not len(values) == len(labels) == len(predictions):
        raise ValueError(f"values, labels and predictions differ in length: {len(values)}, {len(labels)}, "
                         f"{len(predictions)}")
    rows = []
    bins = [(lo, hi, name, (values >= lo) & (values < hi)) for lo, hi, name in bin_edges(edges)]
    missing = np.isnan(values)
    if missing.any():
        bins.append((None, None, "n/a", missing))
    updown = (labels == UP) | (labels == DOWN)
    for lo, hi, name, mask in bins:
        row: dict[str, Any] = {"bin": name, "low": _finite_or_none(lo), "high": _finite_or_none(hi),
                               "count": int(mask.sum()), "updown_count": int((mask & updown).sum())}
        row.update(_accuracies(labels, predictions, mask, updown, ""))
        if baseline is not None:
            row.update(_accuracies(labels, np.asarray(baseline).reshape(-1), mask, updown, "baseline_"))
        rows.append(row)
    return rows


def _accuracies(labels, predictions, mask, updown, prefix: str) -> dict[str, float | None]:
    n, nud = int(mask.sum()), int((mask & updown).sum())
    correct = predictions == labels
    return {f"{prefix}accuracy": float(correct[mask].mean()) if n else None,
            f"{prefix}updown_accuracy": float(correct[mask & updown].mean()) if nud else None}


def _finite_or_none(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _num(value: float) -> str:
    return f"{value:g}"


def baseline_on_dataset(dataset, indices: np.ndarray | Sequence[int] | None = None, chunk: int = 4096,
                        **params: Any) -> np.ndarray:
    """The first-break baseline on the raw (un-normalised) windows of ``dataset``, P at the centre.

    Uses the vertical channel (``Z`` when the reader names its components, else channel 0).
    ``params`` go to ``first_break_polarity`` (k, noise_window, noise_gap, tolerance, search_window).
    """
    from .baselines import first_break_polarity

    idx = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    channel = _vertical_channel(dataset)
    rate = float(getattr(dataset, "sampling_rate", 100.0))
    out = []
    for a in range(0, len(idx), chunk):
        x = dataset.raw_windows(torch.from_numpy(idx[a:a + chunk]))
        x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        out.append(first_break_polarity(x[:, channel, :], x.shape[-1] // 2, rate, **params))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _vertical_channel(dataset) -> int:
    components = getattr(getattr(dataset, "reader", None), "components", None)
    if components:
        names = [str(c).upper() for c in components]
        if "Z" in names:
            return names.index("Z")
    return 0


def analyse(labels: np.ndarray, predictions: np.ndarray, num_classes: int,
            metadata: Mapping[str, np.ndarray] | None = None, baseline: np.ndarray | None = None,
            options: ReportConfig | None = None) -> dict[str, Any]:
    """Bin tables (and baseline metrics) for per-trace arrays; ``metadata`` arrays align with them."""
    options = options or ReportConfig()
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    keep = labels < num_classes  # as Trainer.evaluate: unknown is not scored for two-class models
    out: dict[str, Any] = {"bins": {}}
    if baseline is not None:
        baseline = np.asarray(baseline, dtype=np.int64)
        base = prediction_metrics(labels[keep], baseline[keep], 3)
        base["name"] = "first_break_polarity"
        base["params"] = dict(options.baseline_params)
        out["baseline"] = base
    for key in BIN_KEYS:
        if metadata is None or key not in metadata or not options.edges(key):
            continue
        try:
            values = np.asarray(metadata[key], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            continue
        out["bins"][key] = bin_metrics(values[keep], labels[keep], predictions[keep], options.edges(key),
                                       baseline[keep] if baseline is not None else None)
    return out


# -- the run-folder report -------------------------------------------------------------------------
def score_dataset(run_dir: str | os.PathLike, trainer, dataset, metrics: dict[str, Any],
                  options: ReportConfig | Mapping[str, Any] | None = None,
                  predictions_file: str = "test_predictions.csv") -> dict[str, Any]:
    """``trainer.evaluate(dataset, return_predictions=True)`` -> metrics.json's entry: per-trace arrays
    removed; bins and the first-break baseline added and ``predictions_file`` written (report options
    permitting, on rank 0; under DDP every rank calls this: the predictions are gathered)."""
    options = ReportConfig.from_any(options)
    arrays = _gather_predictions(metrics, trainer)
    metrics = {k: v for k, v in metrics.items() if k not in PREDICTION_KEYS}
    if not getattr(trainer, "is_main", True) or not options.enabled or arrays is None:
        return metrics
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    num_classes = int(getattr(trainer, "num_classes", 3))
    idx = arrays["indices"]
    meta = {k: np.asarray(v)[idx] for k, v in (getattr(dataset, "metadata", None) or {}).items()}
    baseline = None
    if options.baseline and hasattr(dataset, "raw_windows"):
        try:
            baseline = baseline_on_dataset(dataset, idx, **options.baseline_params)
        except Exception as exc:  # the report must not fail a finished run
            log.warning("first-break baseline skipped: %s", exc)
    metrics.update(analyse(arrays["labels"], arrays["predictions"], num_classes, meta, baseline, options))
    if options.save_predictions:
        write_predictions_csv(run_dir / predictions_file, arrays, meta, baseline, num_classes)
        metrics["predictions_file"] = predictions_file
    return metrics


def write_report(run_dir: str | os.PathLike, trainer, dataset, metrics: dict[str, Any],
                 history: Sequence[Mapping[str, Any]] | None = None,
                 options: ReportConfig | Mapping[str, Any] | None = None,
                 header: Sequence[tuple[str, Any]] | None = None) -> dict[str, Any]:
    """Write report.md, test_predictions.csv, PNGs and TensorBoard pictures; return the metrics for
    metrics.json (per-trace arrays removed, ``bins``, ``baseline``, ``report`` and ``figures`` added).

    ``metrics`` is what ``trainer.evaluate(dataset, return_predictions=True)`` returned (an
    ``evaluated`` entry, e.g. "test split of <file> (N traces)", is shown). ``header``: the run's
    (label, value) facts shown first (the runner's ``evaluation.run_header``). Under DDP every rank
    must call this (the per-trace predictions are gathered); only rank 0 writes.
    """
    options = ReportConfig.from_any(options)
    has_arrays = all(k in metrics for k in PREDICTION_KEYS)
    metrics = score_dataset(run_dir, trainer, dataset, metrics, options)
    if not getattr(trainer, "is_main", True) or not options.enabled or not has_arrays:
        return metrics
    run_dir = Path(run_dir)
    context = _context(trainer, dataset)
    context["header"] = list(header or [])
    metrics["report"] = "report.md"
    figures, written = {}, []
    if options.plots and plots_available():
        try:
            figures = make_figures(metrics, history)
            for name, fig in figures.items():
                fig.savefig(run_dir / f"{name}.png", dpi=110)
                written.append(f"{name}.png")
        except Exception as exc:  # a plotting problem must not fail a finished run
            log.warning("figures skipped: %s", exc)
    metrics["figures"] = written
    if options.tensorboard:
        try:
            _tensorboard(trainer, metrics, figures, history)
        except Exception as exc:  # nor must a TensorBoard problem
            log.warning("TensorBoard report skipped: %s", exc)
    markdown = render_markdown(metrics, context, written, not options.plots or plots_available())
    (run_dir / "report.md").write_text(markdown)
    log.info("evaluation report: %s", run_dir / "report.md")
    return metrics


def report_summary(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """Flat numbers for metrics.json's ``summary`` (and sweep tables): the baseline's accuracies."""
    base = (metrics or {}).get("baseline")
    if not base:
        return {}
    return {"test_baseline_accuracy": base["accuracy"], "test_baseline_updown_accuracy": base["updown_accuracy"]}


def _gather_predictions(metrics: Mapping[str, Any], trainer) -> dict[str, np.ndarray] | None:
    if not all(k in metrics for k in PREDICTION_KEYS):
        return None
    arrays = {k: np.asarray(metrics[k]) for k in PREDICTION_KEYS}
    ctx = getattr(trainer, "ctx", None)
    if ctx is not None and getattr(ctx, "enabled", False) and torch.distributed.is_initialized():
        parts: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, arrays)
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in PREDICTION_KEYS}
        order = np.argsort(arrays["indices"], kind="stable")
        arrays = {k: v[order] for k, v in arrays.items()}
    return arrays


def _context(trainer, dataset) -> dict[str, Any]:
    model = getattr(trainer, "model", None)
    describe = model.describe() if hasattr(model, "describe") else {"name": type(model).__name__}
    return {"model": describe.get("name"), "parameters": describe.get("parameters"),
            "data": getattr(dataset, "path", None), "layout": getattr(dataset, "name", None),
            "traces": len(dataset) if dataset is not None else None,
            "epoch": getattr(trainer, "epoch", None),
            "dropped_unknown": (getattr(dataset, "dropped", None) or {}).get("unknown_label")}


def write_predictions_csv(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                          metadata: Mapping[str, np.ndarray] | None = None, baseline: np.ndarray | None = None,
                          num_classes: int = 3) -> None:
    """One row per trace: index, label, prediction, probability of each class, baseline, metadata."""
    probs = np.asarray(arrays["probabilities"])
    k = probs.shape[1] if probs.ndim == 2 else num_classes
    meta_keys = [m for m, v in (metadata or {}).items() if np.asarray(v).ndim == 1]
    header = ["index", "label", "prediction"] + [f"p_{CLASS_NAMES[c]}" for c in range(k)]
    header += (["baseline"] if baseline is not None else []) + meta_keys
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i in range(len(arrays["indices"])):
            row = [int(arrays["indices"][i]), int(arrays["labels"][i]), int(arrays["predictions"][i])]
            row += [f"{float(p):.6f}" for p in probs[i]]
            if baseline is not None:
                row.append(int(baseline[i]))
            row += [_cell(metadata[m][i]) for m in meta_keys]
            writer.writerow(row)


def _cell(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


# -- markdown --------------------------------------------------------------------------------------
def render_markdown(metrics: Mapping[str, Any], context: Mapping[str, Any] | None = None,
                    figures: Sequence[str] = (), plots: bool = True) -> str:
    """The text of report.md."""
    context = dict(context or {})
    base = metrics.get("baseline")
    lines = ["# Evaluation report", ""] + _facts(metrics, context)
    lines += ["", "## Summary", ""] + _summary_table(metrics)
    lines += ["", "Up/down accuracy: of the traces truly up or down, the share predicted with the right sign "
                  "(a prediction of unknown counts as wrong).", ""]
    lines += _class_section("Network", metrics)
    if base:
        lines += _class_section("First-break baseline", base) + _baseline_note(base)
    lines += _bin_sections(metrics)
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem.replace('_', ' ')}]({f})" for f in figures] + [""]
    elif not plots:
        lines += ["(No figures: matplotlib is not installed (`pip install seispolarity[plots]` adds it) or "
                  f"{NO_PLOTS_ENV} is set.)", ""]
    return "\n".join(lines)


def _facts(metrics: Mapping[str, Any], context: Mapping[str, Any]) -> list[str]:
    """The run header (``context["header"]``: (label, value) rows) or, without one, what is known of
    the model and data; then what was evaluated and what was left out."""
    header = list(context.get("header") or [])
    if header:
        facts = header + [("evaluated", metrics.get("evaluated")), ("traces scored", metrics.get("num_samples"))]
    else:
        epoch = context.get("epoch") or None  # 0: nothing trained here (an evaluation-only run)
        facts = [("model", context.get("model")), ("parameters", context.get("parameters")),
                 ("data", context.get("data")), ("layout", context.get("layout")),
                 ("evaluated", metrics.get("evaluated")), ("traces evaluated", metrics.get("num_samples")),
                 ("epochs trained", epoch)]
    lines = [f"- {name}: {_fmt(value)}" for name, value in facts if value is not None]
    if metrics.get("excluded_unknown"):
        lines.append(f"- traces labelled unknown left out (two-class model): {metrics['excluded_unknown']}")
    if context.get("dropped_unknown"):
        lines.append(f"- traces labelled unknown dropped from the data file before splitting (data.unknown=drop): "
                     f"{context['dropped_unknown']}")
    return lines


def _summary_table(metrics: Mapping[str, Any]) -> list[str]:
    base = metrics.get("baseline")
    head = ["metric", "network"] + (["first-break baseline"] if base else [])
    rows = []
    for key, name in (("accuracy", "accuracy"), ("updown_accuracy", "up/down accuracy"),
                      ("macro_f1", "macro F1"), ("loss", "loss")):
        if key in metrics:
            rows.append([name, _fmt(metrics[key])] + ([_fmt(base.get(key))] if base else []))
    return _table(head, rows)


def _baseline_note(base: Mapping[str, Any]) -> list[str]:
    params = ", ".join(f"{k}={v}" for k, v in (base.get("params") or {}).items()) or "defaults"
    return [f"Baseline: `seispolarity.baselines.first_break_polarity` ({params}) on the same raw windows, "
            "P at the centre: the sign of the first sample after the pick that leaves the pre-P noise "
            "band; no crossing -> unknown.", ""]


NO_UPDOWN = "no up/down traces"


def _bin_sections(metrics: Mapping[str, Any], level: str = "##", title_prefix: str = "") -> list[str]:
    """One table per bin key. A bin holding traces but none labelled up or down says so: its accuracy
    would only measure how unknown traces (noise windows) are told apart, not polarity."""
    base = metrics.get("baseline")
    lines: list[str] = []
    for key, (title, unit) in BIN_KEYS.items():
        rows_ = (metrics.get("bins") or {}).get(key)
        if not rows_:
            continue
        name = title if title.isupper() else title.lower()
        lines += [f"{level} {title_prefix}Accuracy by {name}{f' ({unit})' if unit else ''}", ""]
        head = [title, "traces", "accuracy", "up/down traces", "up/down accuracy"]
        head += ["baseline accuracy", "baseline up/down accuracy"] if base else []
        table = [_bin_row(r, bool(base)) for r in rows_]
        lines += _table(head, table) + [""]
        if any(r["count"] and not r["updown_count"] for r in rows_):
            lines += [f"A bin with {NO_UPDOWN} holds only traces labelled unknown (e.g. noise windows): no "
                      "polarity accuracy is shown for it.", ""]
    return lines


def _bin_row(r: Mapping[str, Any], baseline: bool) -> list[str]:
    if r["count"] and not r["updown_count"]:
        return [r["bin"], str(r["count"]), NO_UPDOWN, "0", "-"] + (["-", "-"] if baseline else [])
    row = [r["bin"], str(r["count"]), _fmt(r["accuracy"]), str(r["updown_count"]), _fmt(r["updown_accuracy"])]
    return row + ([_fmt(r.get("baseline_accuracy")), _fmt(r.get("baseline_updown_accuracy"))] if baseline else [])


def render_eval_section(name: str, metrics: Mapping[str, Any]) -> list[str]:
    """report.md's section for the extra test set ``name`` (``eval_sets``): what was scored, network
    next to the first-break baseline, per class, confusion matrices, bins."""
    base = metrics.get("baseline")
    lines = [f"## Eval set: {name}", ""]
    dropped = (metrics.get("dropped") or {}).get("unknown_label")
    facts = [("evaluated", metrics.get("evaluated")), ("traces scored", metrics.get("num_samples")),
             ("traces labelled unknown dropped (two-class model, unknown=auto)", dropped),
             ("traces labelled unknown left out (two-class model)", metrics.get("excluded_unknown") or None)]
    lines += [f"- {k}: {_fmt(v)}" for k, v in facts if v is not None] + [""]
    lines += _summary_table(metrics) + [""]
    lines += _class_section(f"{name}: network", metrics, "###")
    if base:
        lines += _class_section(f"{name}: first-break baseline", base, "###") + _baseline_note(base)
    lines += _bin_sections(metrics, "###", f"{name}: ")
    return lines


def append_report(run_dir: str | os.PathLike, lines: Sequence[str],
                  header: Sequence[tuple[str, Any]] | None = None) -> Path:
    """Add ``lines`` to the run's report.md (a new report with ``header`` when there is none yet)."""
    path = Path(run_dir) / "report.md"
    if path.is_file():
        text = path.read_text().rstrip("\n") + "\n\n"
    else:
        text = "\n".join(["# Evaluation report", ""] + [f"- {k}: {_fmt(v)}" for k, v in header or []] + [""]) + "\n"
    path.write_text(text + "\n".join(lines).rstrip("\n") + "\n")
    return path


def _class_section(title: str, m: Mapping[str, Any], level: str = "##") -> list[str]:
    names = list(m.get("support", {}))
    rows = [[n, _fmt(m["precision"][n]), _fmt(m["recall"][n]), _fmt(m["f1"][n]), str(m["support"][n])] for n in names]
    out = [f"{level} {title}: per class", ""] + _table(["class", "precision", "recall", "F1", "support"], rows) + [""]
    cm = m.get("confusion_matrix")
    if cm:
        out += [f"{title} confusion matrix (rows: true class, columns: predicted):", ""]
        cols = CLASS_NAMES[:len(cm[0])]
        out += _table(["true \\ predicted"] + list(cols),
                      [[CLASS_NAMES[i]] + [str(v) for v in row] for i, row in enumerate(cm)]) + [""]
    return out


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


# -- figures ---------------------------------------------------------------------------------------
def plots_available() -> bool:
    """matplotlib importable and not switched off with ``SEISPOLARITY_NO_PLOTS=1``."""
    if os.environ.get(NO_PLOTS_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return False
    _quiet_matplotlib()
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        return False
    return True


def _quiet_matplotlib() -> None:
    """Keep matplotlib's INFO chatter ("generated new fontManager" on a machine's first run) out of
    the run's train.log, which takes every INFO record through the root logger; its warnings still
    come through, and a level the user set on the "matplotlib" logger is kept."""
    logger = logging.getLogger("matplotlib")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def _figure(width: float, height: float, ncols: int = 1):
    _quiet_matplotlib()  # (the plot_* functions are public: they may be the first to import it)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # no pyplot: no global state, no GUI backend
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def plot_confusion(matrices: Mapping[str, Sequence[Sequence[int]]]):
    """Confusion matrices side by side (counts and row percentages)."""
    fig, axes = _figure(4.2 * len(matrices), 3.8, len(matrices))
    for ax, (title, cm) in zip(axes, matrices.items()):
        cm = np.asarray(cm, dtype=np.float64)
        rows = cm.sum(axis=1, keepdims=True)
        share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        names = CLASS_NAMES[:cm.shape[1]]
        ax.set_xticks(range(cm.shape[1]), names)
        ax.set_yticks(range(cm.shape[0]), CLASS_NAMES[:cm.shape[0]])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, f"{int(cm[i, j])}\n{100 * share[i, j]:.0f}%", ha="center", va="center",
                        color="white" if share[i, j] > 0.6 else "black", fontsize=9)
    return fig


def plot_training_curves(history: Sequence[Mapping[str, Any]]):
    """Loss and accuracy per epoch, training and validation."""
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = _figure(9, 3.6, 2)
    epochs = [h.get("epoch") for h in history]
    for ax, key, title in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        for split in ("train", "val"):
            pts = [(e, h.get(f"{split}_{key}")) for e, h in zip(epochs, history) if h.get(f"{split}_{key}") is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label="training" if split == "train" else "validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_accuracy_by_bins(rows: Sequence[Mapping[str, Any]], title: str):
    """Accuracy of network and baseline per bin, with the number of traces per bin."""
    fig, axes = _figure(7, 3.8)
    ax = axes[0]
    x = np.arange(len(rows))
    counts = ax.twinx()
    counts.bar(x, [r["count"] for r in rows], color="0.85", width=0.6, zorder=0)
    counts.set_ylabel("traces")
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)
    series = [("accuracy", "network", "C0", "-"), ("updown_accuracy", "network, up/down", "C0", ":"),
              ("baseline_accuracy", "first-break baseline", "C3", "-"),
              ("baseline_updown_accuracy", "baseline, up/down", "C3", ":")]
    for key, label, color, style in series:
        if any(key in r for r in rows):
            y = [np.nan if r.get(key) is None else r[key] for r in rows]
            ax.plot(x, y, marker="o", color=color, linestyle=style, label=label)
    ax.set_xticks(x, [r["bin"] for r in rows], rotation=20)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_xlabel(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def make_figures(metrics: Mapping[str, Any], history: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """name -> Figure: confusion_matrix, training_curves (with a history), accuracy_vs_<bin key>."""
    figures: dict[str, Any] = {}
    matrices = {"network": metrics["confusion_matrix"]}
    if metrics.get("baseline"):
        matrices["first-break baseline"] = metrics["baseline"]["confusion_matrix"]
    figures["confusion_matrix"] = plot_confusion(matrices)
    if history:
        figures["training_curves"] = plot_training_curves(history)
    for key, rows in (metrics.get("bins") or {}).items():
        title, unit = BIN_KEYS.get(key, (key, ""))
        figures[f"accuracy_vs_{key}"] = plot_accuracy_by_bins(rows, f"{title} ({unit})" if unit else title)
    return figures


def figure_to_array(fig) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 of a Figure (for TensorBoard)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


# -- TensorBoard -----------------------------------------------------------------------------------
def _tensorboard(trainer, metrics: Mapping[str, Any], figures: Mapping[str, Any], history) -> None:
    config = getattr(trainer, "config", None)
    writer, own = getattr(trainer, "writer", None), False
    if writer is None:
        folder = getattr(config, "tensorboard_dir", None)
        if not folder:
            return
        from torch.utils.tensorboard import SummaryWriter

        writer, own = SummaryWriter(log_dir=folder), True
    step = int(getattr(trainer, "epoch", 0) or 0)
    try:
        for name, fig in figures.items():
            writer.add_image(f"Test/{name}", figure_to_array(fig), step, dataformats="HWC")
        if metrics.get("baseline"):
            writer.add_scalar("Test/baseline_accuracy", metrics["baseline"]["accuracy"], step)
            writer.add_scalar("Test/baseline_updown_accuracy", metrics["baseline"]["updown_accuracy"], step)
        final = {"hparam/test_accuracy": metrics["accuracy"], "hparam/test_updown_accuracy": metrics["updown_accuracy"],
                 "hparam/test_macro_f1": metrics["macro_f1"]}
        if metrics.get("baseline"):
            final["hparam/baseline_accuracy"] = metrics["baseline"]["accuracy"]
        best = next((h for h in reversed(list(history or [])) if h.get("best")), None)
        vals = [h["val_accuracy"] for h in (history or []) if h.get("val_accuracy") is not None]
        if vals:
            final["hparam/best_val_accuracy"] = float(max(vals)) if best is None else float(best["val_accuracy"])
        writer.add_hparams(hparams_of(trainer), {k: float(v) for k, v in final.items()}, run_name="hparams",
                           global_step=step)
        writer.flush()
    finally:
        if own:
            writer.close()


def hparams_of(trainer) -> dict[str, Any]:
    """Scalar hyperparameters of a run: model name and constructor arguments, training config,
    and the run config's data name / size when the Hydra runner made the trainer."""
    out: dict[str, Any] = {}
    model = getattr(trainer, "model", None)
    if hasattr(model, "describe"):
        d = model.describe()
        out["model"] = d.get("name")
        out.update({f"model.{k}": v for k, v in (d.get("init_kwargs") or {}).items()})
    config = getattr(trainer, "config", None)
    if config is not None:
        values = config.to_dict() if hasattr(config, "to_dict") else asdict(config)
        for k in ("batch_size", "epochs", "learning_rate", "optimizer", "weight_decay", "lr_scheduler",
                  "seed", "amp", "class_balance", "gradient_clip_value"):
            if k in values:
                out[k] = values[k]
    run = (getattr(trainer, "extra_state", None) or {}).get("run_config") or {}
    data = run.get("data") or {}
    for k in ("name", "path", "num_traces"):
        if k in data:
            out[f"data.{k}"] = data[k]
    if "lr" in run:
        out["lr"] = run["lr"]
    plain = {}
    for k, v in out.items():
        if isinstance(v, (bool, int, float, str)):
            plain[k] = v
        elif v is None:
            plain[k] = "None"
        elif isinstance(v, (list, tuple)):
            plain[k] = str(list(v))
    return plain


__all__ = ["ReportConfig", "write_report", "score_dataset", "render_eval_section", "append_report", "analyse",
           "bin_metrics", "bin_edges", "prediction_metrics", "baseline_on_dataset", "render_markdown",
           "write_predictions_csv", "report_summary", "make_figures",
           "plot_confusion", "plot_training_curves", "plot_accuracy_by_bins", "plots_available", "hparams_of"]
