"""What ``train.py`` does with a composed config: build the pieces, run them, write the run folder.

The library below knows nothing of Hydra; this module turns a config into library calls
(``WaveformDataset``, a model, ``TrainingConfig``, ``Trainer``) and writes the run folder that
docs/runner.md ("A run's folder") describes: resolved ``config.yaml``, ``metrics.json``, checkpoints
and TensorBoard events (the Trainer writes those two), and ``train.log`` (Hydra's file handler).
docs/architecture.md: where it sits among the runner's modules.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import inspect
import io
import json
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_method, to_absolute_path
from omegaconf import DictConfig, OmegaConf

from .config import build_from_node
from .evaluation import (
    adopt_checkpoint,
    adopt_run_data,
    build_eval_sets,
    checkpoint_arg,
    checkpoint_state,
    data_identity,
    eval_set_configs,
    eval_sets_summary,
    evaluate_eval_sets,
    evaluated_text,
    held_out_split,
    init_state,
    run_header,
    unknown_mode,
)
from .failures import FAILED_FILE, INTERRUPTED, clear_failed, one_line
from .folders import atomic_file
from .preflight import check_command, check_data, is_synthetic
from .reports import ReportConfig, append_report, render_eval_section, report_summary, write_report
from .resume import resumed_config
from .training import Trainer, TrainingConfig, seed_everything
from .training.checkpoint import load_checkpoint
from .training.distributed import DistContext, barrier, init_distributed
from .training.optim import fields_from_node
from .training.trainer import TrainingInterrupted

log = logging.getLogger("seispolarity.runner")


def output_dir() -> Path:
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # composed without @hydra.main (tests using the compose API)
        return Path.cwd()


def build_model(cfg: DictConfig):
    # plain lists/dicts: a ListConfig argument (e.g. Ross's kernel_sizes) would end up in the
    # checkpoint's model description and make it unloadable with weights_only=True
    try:
        return build_from_node(cfg.model)
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as exc:
        # the defaults build every model (tests/test_models.py): a failure is one of the values changed
        values = OmegaConf.to_container(cfg.model, resolve=True)
        target = values.pop("_target_")
        defaults = {p.name: p.default for p in inspect.signature(get_method(target)).parameters.values()}
        changed = ", ".join(f"model.{k}={v!r}" for k, v in values.items() if defaults.get(k, v) != v)
        raise ValueError(f"model={_choice('model') or target.rsplit('.', 1)[-1]} cannot be built with "
                         f"{changed or 'its defaults'}: {one_line(exc)}") from exc


def _choice(group: str) -> str | None:
    """The option of ``group`` this run composed (``model=ppnet``), where Hydra ran it."""
    try:
        return HydraConfig.get().runtime.choices.get(group)
    except ValueError:  # composed without @hydra.main
        return None


def build_datasets(cfg: DictConfig, model, augment) -> tuple[Any, Any]:
    """The training data (validation and test are split from it by the Trainer) and, where the
    data set ships its own test file (``data.test_path``), that file as the test set."""
    check_data(cfg.data)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    test_path = data_cfg.pop("test_path", None)
    if is_synthetic(data_cfg):
        data_cfg.pop("path", None)  # generated, not read (check_data refused a path)
    if data_cfg.get("unknown") == "auto":
        data_cfg["unknown"] = unknown_mode("auto", model)
        if data_cfg["unknown"] == "drop":
            log.info("two-class model: data.unknown=auto drops the traces labelled unknown (counts below and "
                     "in metrics.json 'data'; data.unknown=keep makes them an error instead)")
    for key in ("path", "cache_dir"):
        if data_cfg.get(key):
            data_cfg[key] = to_absolute_path(data_cfg[key])
    data_cfg["window_length"] = int(model.input_length)
    data_cfg["max_shift"] = int(augment.max_shift) if augment is not None else 0
    dataset = build_from_node(data_cfg)
    test_dataset = None
    if test_path:
        data_cfg["path"] = to_absolute_path(test_path)
        test_dataset = build_from_node(data_cfg)
    return dataset, test_dataset


def training_config(cfg: DictConfig) -> TrainingConfig:
    """``trainer.*``, the ``optimizer`` and ``scheduler`` nodes (entries of the registry in
    ``training/optim.py``, which the Trainer builds them from) and ``ckpt_path`` / ``init_from``."""
    def plain(key: str) -> Any:
        node = cfg.get(key)
        return OmegaConf.to_container(node, resolve=True) if node is not None else None

    values = plain("trainer")
    values.pop("_target_", None)
    values.update(fields_from_node(plain("optimizer"), plain("scheduler")))
    if cfg.get("ckpt_path") and cfg.get("train"):
        values["resume_from"] = to_absolute_path(cfg.ckpt_path)
    if cfg.get("init_from") and cfg.get("train"):
        values["init_from"] = checkpoint_arg(cfg.init_from)
    try:
        return TrainingConfig(**values)
    except ValueError as exc:  # "TrainingConfig.learning_rate=-1.0: ..." says what the user typed: "lr=-1.0: ..."
        raise ValueError(re.sub(r"^TrainingConfig\.(\w+)(?:\['(\w+)'\])?", lambda m: _command_key(m[1], m[2]),
                                str(exc))) from None


def _command_key(field_name: str, keyword: str | None = None) -> str:
    """The command-line key that sets a ``TrainingConfig`` field (or ``keyword`` of its optimizer's or
    scheduler's parameters)."""
    if keyword:
        return f"{'scheduler' if field_name == 'lr_scheduler_params' else 'optimizer'}.{keyword}"
    if field_name in ("learning_rate", "optimizer_params"):
        return "lr" if field_name == "learning_rate" else "optimizer"
    if field_name in ("weight_decay", "momentum"):
        return f"optimizer.{field_name}"
    if field_name in ("lr_scheduler", "lr_scheduler_params"):
        return "scheduler"
    return {"resume_from": "ckpt_path", "init_from": "init_from"}.get(field_name, f"trainer.{field_name}")


#: metrics.json's ``summary`` keys (``summarize``, ``report_summary``, ``eval_sets_summary``): what
#: ``objective=`` may name.
TRAINING_SUMMARY = ("epochs", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1",
                    "val_updown_accuracy", "best_epoch", "parameters", "samples_per_second")
TEST_SUMMARY = ("loss", "accuracy", "macro_f1", "updown_accuracy")


def objective_names(eval_sets: list[str]) -> list[str]:
    """Every number a run's summary may hold, for a run with these eval sets."""
    names = [*TRAINING_SUMMARY, *(f"test_{k}" for k in TEST_SUMMARY), "test_excluded_unknown",
             "test_baseline_accuracy", "test_baseline_updown_accuracy", "wall_time_s"]
    for name in eval_sets:
        names += [f"eval_{name}_accuracy", f"eval_{name}_updown_accuracy", f"eval_{name}_baseline_updown_accuracy"]
    return names


def summarize(result: dict, test: dict | None, trainer: Trainer) -> dict[str, Any]:
    """The flat numbers a sweep table and the objective read."""
    history = result.get("history") or []
    last = history[-1] if history else {}
    best = result.get("best") or {}
    summary: dict[str, Any] = {
        "epochs": result.get("epochs_trained", 0),
        "train_loss": last.get("train_loss"), "train_accuracy": last.get("train_accuracy"),
        "val_loss": best.get("val_loss"), "val_accuracy": best.get("val_accuracy"),
        "val_macro_f1": best.get("val_macro_f1"), "val_updown_accuracy": best.get("val_updown_accuracy"),
        "best_epoch": best.get("epoch"),
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "samples_per_second": last.get("samples_per_second"),
    }
    if test:
        summary.update({f"test_{k}": test[k] for k in TEST_SUMMARY})
        summary["test_excluded_unknown"] = test.get("excluded_unknown", 0)
    return summary


def describe_data(cfg: DictConfig, trainer: Trainer, test_from_file: bool, evaluated=None) -> dict[str, Any]:
    """metrics.json's ``data``: the unknown policy, the label map, what each file lost (and why)
    and the traces / classes of every split (of an evaluation-only run: of the ``evaluated`` traces)."""
    mode = unknown_mode(cfg.data.get("unknown", "keep"), trainer) if cfg.get("data") is not None else "keep"
    splits = {role: ds for role, ds in (("train", trainer.train_dataset), ("val", trainer.val_dataset),
                                        ("test", trainer.test_dataset)) if ds is not None}
    if evaluated is not None:
        splits = {"test": evaluated}
    out: dict[str, Any] = {"unknown": mode, "label_map": getattr(trainer.train_dataset, "label_map", None),
                           "dropped": {"train_file": dict(getattr(trainer.train_dataset, "dropped", {}))}}
    if test_from_file and trainer.test_dataset is not None:
        out["dropped"]["test_file"] = dict(getattr(trainer.test_dataset, "dropped", {}))
    out["splits"] = {role: {"traces": len(ds), "classes": ds.class_counts() if hasattr(ds, "class_counts") else None}
                     for role, ds in splits.items()}
    return out


def objective_value(cfg: DictConfig, summary: dict[str, Any]) -> float:
    name = cfg.objective
    if name not in summary and name not in objective_names(list(cfg.get("eval_sets") or {})):
        raise KeyError(f"objective={name!r} is not a run metric; choose one of {sorted(summary)}")
    value = summary.get(name)  # None: a number this run did not make (test=false, report=none, ...)
    if value is None:  # e.g. val_accuracy without validation: fall back to the test metric
        fallback = name.replace("val_", "test_")
        value = summary.get(fallback)
        if cfg.get("train", True):  # a training run without validation: worth a warning
            log.warning("objective %s is not available for this run; using %s=%s", name, fallback, value)
        else:  # an evaluation has no validation split: its test metric is the objective, as expected
            log.info("objective: %s=%s (an evaluation has no %s)", fallback,
                     value if value is None else round(float(value), 4), name)
    return float("nan") if value is None else float(value)


def run(cfg: DictConfig) -> float:
    """Train and/or test as the config says; write the run folder; return the objective."""
    out = output_dir()
    try:
        check_command(cfg)  # (a single run: already checked by the Preflight callback, before its folder)
        if cfg.get("train", True) and cfg.get("ckpt_path"):
            cfg = _resume(cfg)
        return _run(cfg, out)
    except Exception as exc:
        from .failures import report_failure

        # signals and bad input: one line on stderr (+ exit code) for a CLI run; bugs: the traceback
        try:
            report_failure(exc)
        finally:
            if isinstance(exc, TrainingInterrupted):
                _stop_sweep(cfg)
        raise
    except KeyboardInterrupt:  # Ctrl-C while the data loads or the test runs (training handles its own)
        from .failures import report_interrupt

        try:
            report_interrupt(OmegaConf.select(cfg, "trainer.save_dir", default=None))
        finally:
            _stop_sweep(cfg)
        raise


def _refresh_sweep_summary(cfg: DictConfig, out: Path) -> None:
    """A sweep's job resumed on its own (``ckpt_path=<sweep>/<job>/checkpoints/last.ckpt``) and
    finished: the sweep's summary now says so (a multirun job's own summary is on_job_end's)."""
    try:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return
    except ValueError:
        return
    if out.name.isdigit() and (out.parent / "summary.csv").is_file():
        write_sweep_summary(out.parent, cfg.get("objective"))
        log.info("sweep summary updated: %s", out.parent / "summary.md")


def _stop_sweep(cfg: DictConfig) -> None:
    """A signal that stopped this multirun job stops the sweep: the summary so far (this job's row
    says how to resume it) and one line saying so."""
    try:
        hydra = HydraConfig.get()
    except ValueError:
        return
    if hydra.mode != RunMode.MULTIRUN or int(os.environ.get("RANK", "0")) != 0:
        return
    sweep = Path(hydra.sweep.dir)
    write_sweep_summary(sweep, cfg.get("objective"))
    print(f"sweep stopped at job {hydra.job.num}: the jobs after it did not run; every job's status so far: "
          f"{sweep / 'summary.md'}", file=sys.stderr, flush=True)


def _command() -> tuple[str | None, list[str] | None]:
    """This job's config name and command-line overrides (unresolved: only their keys count); None,
    None outside Hydra."""
    try:
        hydra = HydraConfig.get()
        return hydra.job.config_name, OmegaConf.to_container(hydra.overrides.task, resolve=False)
    except ValueError:
        return None, None


def _resume(cfg: DictConfig) -> DictConfig:
    """A resumed run takes its config from the checkpoint (``seispolarity.resume``)."""
    config_name, overrides = _command()
    state = load_checkpoint(to_absolute_path(str(cfg.ckpt_path)))
    cfg, notes = resumed_config(cfg, state, config_name, overrides=overrides)
    log.info("resuming %s with its run's config%s", cfg.ckpt_path,
             "; changed by this command: " + ", ".join(notes) if notes else "")
    return cfg


# -- distributed runs and launchers (torchrun ranks, joblib workers, submitit jobs) ------------------
def _join_process_group(cfg: DictConfig) -> DistContext:
    """Join torchrun's process group before the data is built (the Trainer then reuses it); ranks
    other than 0 log warnings to their console only (their train.log handler is detached)."""
    trainer_cfg = cfg.get("trainer") or {}
    ctx = init_distributed(trainer_cfg.get("distributed", "auto"), str(trainer_cfg.get("device", "auto")))
    if not ctx.is_main:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(max(root.level, logging.WARNING))
    return ctx


@contextlib.contextmanager
def _main_rank_first(ctx: DistContext):
    """Rank 0 runs the block first (e.g. generating and caching the data), then the other ranks."""
    if not ctx.is_main:
        barrier(ctx)
    yield
    if ctx.is_main:
        barrier(ctx)


def _launcher_target() -> str:
    try:
        return str(HydraConfig.get().launcher.get("_target_", ""))
    except ValueError:
        return ""


def _adapt_to_launcher(cfg: DictConfig, train_config: TrainingConfig) -> None:
    """submitit: a requeued job (SLURM pre-emption or time limit) resumes from its own
    ``checkpoints/last.ckpt``. (joblib needs nothing: the streaming workers, ``training.worker_pool``,
    run inside its loky workers, where DataLoader's crashed.)"""
    launcher = _launcher_target()
    if "submitit" in launcher.lower() and cfg.train and not cfg.get("ckpt_path") and train_config.save_dir:
        last = Path(train_config.save_dir) / "last.ckpt"
        if last.is_file():
            log.warning("requeued job: resuming from %s", last)
            train_config.resume_from = str(last)


def _run(cfg: DictConfig, out: Path) -> float:
    started = time.monotonic()
    ctx = _join_process_group(cfg)
    seed_everything(int(cfg.seed))
    train_config = training_config(cfg)  # first: a bad trainer value fails before any data is touched
    extra_configs = eval_set_configs(cfg)  # so does a bad eval set
    state = checkpoint_state(cfg)  # train=false: the checkpoint (its run config: what it held out)
    source = state if state is not None else init_state(cfg)  # ... or init_from: the weights to fine-tune
    if state is not None:  # without a data option, the data of the checkpoint's run
        adopt_run_data(cfg, state, _command()[1])
    if source is not None:  # its model and normalisation, whatever model= and data.normalize say
        adopt_checkpoint(cfg, source, "evaluation" if state is not None else f"init_from={cfg.init_from}")
    model = build_model(cfg)
    augment = build_from_node(cfg.augment) if cfg.get("augment") is not None else None
    with _main_rank_first(ctx):  # rank 0 generates / caches the data once; the other ranks read it
        dataset, test_dataset = build_datasets(cfg, model, augment)
        held_out = held_out_split(cfg, dataset, state) if test_dataset is None else None
        extra_sets = build_eval_sets(extra_configs, model, dataset)
    _adapt_to_launcher(cfg, train_config)
    test_dataset, how = _test_data(cfg, train_config, test_dataset, held_out)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    trainer = Trainer(
        model=model, dataset=dataset, config=train_config, test_dataset=test_dataset,
        augment=augment, extra_state={"run_config": resolved, "data_identity": data_identity(resolved.get("data"))})
    if trainer.is_main:
        _write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        log.info("run folder: %s", out)
        log.info("data: %r", dataset)
    result = trainer.train() if cfg.train else trainer.result()
    header = functools.partial(_header, cfg, trainer, result, started, state, resolved)  # timed when written
    test_metrics, extra = _evaluate(cfg, trainer, train_config, out, result, how, extra_sets, header)
    trainer.close()
    summary = summarize(result, test_metrics, trainer)
    summary.update(report_summary(test_metrics))
    summary.update(eval_sets_summary(extra))
    summary["wall_time_s"] = round(time.monotonic() - started, 1)
    value = objective_value(cfg, summary)
    if trainer.is_main:
        evaluated = None if cfg.train else (trainer.test_dataset if trainer.test_dataset is not None
                                            else trainer.train_dataset)
        data = describe_data(cfg, trainer, test_from_file=how == "test file", evaluated=evaluated)
        _write_metrics(out, cfg, value, summary, result, test_metrics, extra, data)
        acc = summary.get("test_accuracy")
        clear_failed()  # a resumed run that failed before has now finished
        _refresh_sweep_summary(cfg, out)
        print(f"run folder: {out}\n" + (f"test accuracy: {acc:.4f}" if acc is not None else
                                          f"{cfg.objective}: {value:.4f}"), flush=True)
    _leave_process_group()
    return value


def _write_metrics(out: Path, cfg: DictConfig, value: float, summary: dict, result: dict, test_metrics: dict | None,
                   extra: dict, data: dict) -> None:
    payload = {"objective": {"name": cfg.objective, "value": value}, "summary": summary,
               "best": result.get("best"), "test": test_metrics, "eval_sets": extra,
               "history": [{k: v for k, v in h.items() if k != "val_metrics"} for h in result.get("history", [])],
               "run_dir": str(out), "tags": list(cfg.tags), "data": data}
    if test_metrics and test_metrics.get("evaluated"):
        payload["evaluated"] = test_metrics["evaluated"]  # e.g. "test split of <file> (N traces)"
    _write_json(out / "metrics.json", payload)


def _test_data(cfg: DictConfig, train_config: TrainingConfig, test_dataset, held_out) -> tuple[Any, str]:
    """The test set and how it was chosen: a training run tests the data set's own test file, else
    a held-out split; train=false scores that file, else the checkpoint's own held-out split of the
    data it trained on (``held_out``), else every trace."""
    how = "test file" if test_dataset is not None else "test split"
    if not cfg.train:
        train_config.validation_split = 0.0
        train_config.test_split = 0.0 if test_dataset is None else train_config.test_split
        if held_out is not None:
            test_dataset, how = held_out
        elif test_dataset is None:
            how = "all"
    return test_dataset, how


def _evaluate(cfg: DictConfig, trainer: Trainer, train_config: TrainingConfig, out: Path, result: dict, how: str,
              extra_sets: dict[str, Any], header) -> tuple[dict | None, dict[str, Any]]:
    """Test the best checkpoint (or, for train=false, ``ckpt_path``) on the test data, then on every
    eval set; write the report. Returns metrics.json's ``test`` and ``eval_sets``."""
    if not (cfg.test or not cfg.train or extra_sets):
        return None, {}
    history = _load_for_evaluation(cfg, trainer, train_config) or result.get("history")
    report = OmegaConf.to_container(cfg.report, resolve=True) if cfg.get("report") is not None else None
    test_metrics = None
    eval_set = trainer.test_dataset
    if eval_set is None and not cfg.train:
        eval_set = trainer.train_dataset
    if eval_set is not None and (cfg.test or not cfg.train):
        test_metrics = trainer.evaluate(eval_set, return_predictions=True)
        test_metrics["evaluated"] = evaluated_text(how, eval_set)
        log.info("evaluated: %s", test_metrics["evaluated"])
        trainer.log_eval_scalars("Test", test_metrics, trainer.epoch)
        # report.md, PNGs, TensorBoard figures; metrics.json's "test" gains bins and the baseline
        test_metrics = write_report(out, trainer, eval_set, test_metrics, history, report, header=header())
    extra = evaluate_eval_sets(trainer, extra_sets, out, report)
    enabled = ReportConfig.from_any(report).enabled
    if extra and trainer.is_main and enabled:
        sections = [line for name, m in extra.items() for line in render_eval_section(name, m)]
        append_report(out, sections, header())
    return test_metrics, extra


def _load_for_evaluation(cfg: DictConfig, trainer: Trainer, train_config: TrainingConfig) -> list | None:
    """Load the weights to evaluate: the best checkpoint after training, ``ckpt_path`` for train=false.
    Returns the training history to plot (the checkpoint's, for train=false)."""
    if cfg.train:
        best = Path(train_config.save_dir or "") / "best.ckpt"
        if best.is_file():
            trainer.model.load_state_dict(load_checkpoint(best)["model_state_dict"])
            log.info("testing the best checkpoint (%s)", best)
        return None
    state = trainer.load_checkpoint(checkpoint_arg(cfg.ckpt_path), weights_only_model=True)
    log.info("evaluating %s", cfg.ckpt_path)
    return state.get("history") or None


def _header(cfg: DictConfig, trainer: Trainer, result: dict, started: float, state: dict | None,
            resolved: dict) -> list[tuple[str, Any]]:
    """report.md's run header; for train=false, the training facts of the checkpoint's run."""
    model = trainer.model.describe() if hasattr(trainer.model, "describe") else {"name": type(trainer.model).__name__}
    model = {**model, "parameters": sum(p.numel() for p in trainer.model.parameters())}
    wall = time.monotonic() - started
    if state is None:
        splits = {role: len(ds) for role, ds in (("train", trainer.train_dataset), ("validation", trainer.val_dataset),
                                                 ("test", trainer.test_dataset)) if ds is not None}
        return run_header(resolved, trainer.config.to_dict(), trainer.epoch, (result.get("best") or {}).get("epoch"),
                          model, wall, splits=splits)
    return run_header(state.get("run_config") or {}, state.get("training_config") or {}, state.get("epoch"),
                      (state.get("best_metrics") or {}).get("epoch"), model, wall, checkpoint=str(cfg.ckpt_path))


def _leave_process_group() -> None:
    """Destroy the process group after a run; in a multirun under torchrun the next job reuses it
    (a destroyed default group cannot be re-created on torchrun's store), so leave it at exit."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    try:
        from hydra.types import RunMode

        multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        multirun = False
    if not multirun:
        # Leave together: a rank that tears gloo down while rank 0 still writes its report can
        # abort ("terminate called without an active exception").
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    elif not getattr(_leave_process_group, "at_exit", False):
        import atexit

        atexit.register(lambda: torch.distributed.is_initialized() and torch.distributed.destroy_process_group())
        _leave_process_group.at_exit = True


def _write_json(path: Path, payload: Any) -> None:
    _write_text(path, json.dumps(payload, indent=2, default=_json_default, allow_nan=True))


def _write_text(path: Path, text: str) -> None:
    """All or nothing (folders.atomic_file): on failure (disk full) no partial file."""
    try:
        with atomic_file(path) as tmp:
            Path(tmp).write_text(text)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and math.isinf(value):
        return None
    return str(value)


# -- sweeps ------------------------------------------------------------------------------------------
def collect_sweep(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder of a multirun: its number, overrides, status and summary metrics."""
    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = OmegaConf.load(overrides_file) if overrides_file.is_file() else []
        row: dict[str, Any] = {"job": int(job.name), "overrides": " ".join(str(o) for o in overrides)}
        metrics_file, failed = job / "metrics.json", job / FAILED_FILE
        if failed.is_file():
            row["error"] = (failed.read_text().splitlines() or [""])[0]
            row["status"] = "interrupted" if row["error"].startswith(INTERRUPTED) else "failed"
        elif metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            row["status"] = "ok"
            row["objective"] = metrics["objective"]["value"]
            row.update(metrics.get("summary", {}))
        else:
            row["status"] = "not finished"  # running, or killed
        rows.append(row)
    return rows


def write_sweep_summary(sweep_dir: Path, objective: str | None = None, maximize: bool | None = None) -> list[dict]:
    """``summary.csv`` and ``summary.md`` at the sweep root, ranked by the objective (higher is better
    unless ``maximize=False`` or, by default, the objective is a loss)."""
    if maximize is None:
        maximize = not str(objective or "").endswith("loss")
    rows = collect_sweep(sweep_dir)
    if not rows:
        return rows
    key = "objective"
    rows.sort(key=lambda r: (r.get(key) is None or (isinstance(r.get(key), float) and math.isnan(r[key])),
                             -(r.get(key) or 0.0) if maximize else (r.get(key) or 0.0)))
    columns = ["rank", "job", "overrides", "status", "objective"]
    columns += ["error"] if any("error" in r for r in rows) else []
    for row in rows:
        columns += [k for k in row if k not in columns]
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    _write_text(sweep_dir / "summary.csv", table.getvalue())  # atomic: parallel jobs rewrite it
    shown = [c for c in columns if c in ("rank", "job", "overrides", "status", "error", "objective", "val_accuracy",
                                         "val_updown_accuracy", "test_accuracy", "test_updown_accuracy",
                                         "test_macro_f1", "epochs", "parameters") or _eval_set_column(c)]

    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v).replace("|", "\\|"))

    lines = [f"# Sweep summary ({objective or 'objective'}, {'higher' if maximize else 'lower'} is better)", "",
             "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in shown) + " |" for r in rows]
    failed = sum(r["status"] != "ok" for r in rows)
    if failed:
        lines += ["", f"{failed} of {len(rows)} jobs started did not finish; a failed job's traceback is in its "
                      f"`<job>/train.log`, an interrupted job's row says how to resume it."]
    _write_text(sweep_dir / "summary.md", "\n".join(lines) + "\n")
    return rows


def _eval_set_column(column: str) -> bool:
    """summary.md shows each eval set's up/down accuracy (summary.csv has every number)."""
    return column.startswith("eval_") and column.endswith("_updown_accuracy") and not column.endswith(
        "_baseline_updown_accuracy")


def _basic_sweeper(config: DictConfig) -> bool:
    """Hydra's basic sweeper (it stops at a failed job; Optuna's counts failures itself)."""
    return str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "").endswith("BasicSweeper")


class SweepSummary(Callback):
    """Hydra callback: after a multirun, write the summary table at the sweep root."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Create the folder of an SQLite sweeper storage (SQLite does not create it)."""
        storage = OmegaConf.select(config, "hydra.sweeper.storage", default=None)
        if isinstance(storage, str) and storage.startswith("sqlite:///"):
            db = Path(storage[len("sqlite:///"):])
            if str(db) not in ("", ":memory:"):
                db.parent.mkdir(parents=True, exist_ok=True)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        """After every job (a failed one too): the summary so far, so it exists whatever ends the
        sweep (a basic sweep stops with the first failed job's error once every job has run)."""
        from hydra.types import RunMode

        if OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            return
        self._write(config, announce=False)
        from .failures import JobFailed

        value = getattr(job_return, "_return_value", None)
        if isinstance(value, JobFailed) and _basic_sweeper(config):
            # The basic sweeper would re-raise the first failed job's error after its batch, with a
            # line naming that job's overrides only, and stop later batches. The job is handed back
            # as done; on_multirun_end, once every job has run, ends the command with exit 1 and
            # one line (str(JobFailed): the tally). Sweepers that count failures themselves
            # (Optuna) get the exception as it is.
            from hydra.core.utils import JobStatus

            job_return.status, job_return._return_value = JobStatus.COMPLETED, None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = self._write(config, announce=True)
        failed = [r for r in rows if r.get("status") != "ok"] if _basic_sweeper(config) else []
        if failed:  # read from the sweep folder: jobs may have run in other processes (joblib, SLURM)
            from .failures import JobFailed

            first = min(failed, key=lambda r: int(r.get("job", 0)))
            raise SystemExit(JobFailed(str(first.get("job")), str(first.get("error", "")), str(config.hydra.sweep.dir)))

    @staticmethod
    def _write(config: DictConfig, announce: bool) -> list[dict]:
        """The sweep's rows (none on the ranks other than 0 of a multirun under torchrun: rank 0 writes)."""
        if int(os.environ.get("RANK", "0")) != 0:
            return []
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return []
        rows = write_sweep_summary(sweep_dir, config.get("objective", "objective"))
        if rows and announce:
            failed = sum(r["status"] != "ok" for r in rows)
            print(f"sweep summary: {sweep_dir / 'summary.md'}" + (f" ({failed} of {len(rows)} jobs failed)"
                                                                  if failed else ""), flush=True)
        return rows
