"""What a runner job evaluates, besides the training it does.

- ``eval_sets``: named extra test sets (cross-domain evaluation), each a data config like ``data``
  (``name`` is the layout). They are checked before any data is read, loaded with the model's input
  window and the run's normalisation (unknown traces dropped for a two-class model, as for the test
  set), scored with the best checkpoint and reported beside the first-break baseline.
- ``train=false ckpt_path=...``: on the data the checkpoint was trained on (same file, same
  selection; the checkpoint stores its run config), the run's own held-out test split is scored,
  not traces it trained on; on other data, every trace.
- The run header of report.md (model, optimizer, schedule, epochs, data, seed, wall time).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any, Mapping

from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from .preflight import check_exists

log = logging.getLogger("seispolarity.runner")

#: Data keys that change where or how a file is read, not which traces it holds.
IDENTITY_IGNORED = ("preload", "cache_dir")
_SET_NAME = re.compile(r"[A-Za-z0-9_.-]+")


# -- eval_sets: configs and data sets ----------------------------------------------------------------
def eval_set_configs(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """``cfg.eval_sets`` as plain data configs ready to build (checked, no data read)."""
    sets = cfg.get("eval_sets") or {}
    return {str(name): _eval_set_config(str(name), entry, cfg) for name, entry in sets.items()}


def _eval_set_config(name: str, entry: Any, cfg: DictConfig) -> dict[str, Any]:
    from .config import EVAL_SET_EXCLUDED, data_schemas

    if not _SET_NAME.fullmatch(name):
        raise ValueError(f"eval_sets.{name}: a set's name may hold letters, digits, '_', '-' and '.' only "
                         f"(it names files and summary columns)")
    values = OmegaConf.to_container(entry, resolve=True) if OmegaConf.is_config(entry) else dict(entry or {})
    given = {k: v for k, v in values.items() if v is not None}
    layout = str(given.pop("name", "") or "").lower()
    schemas = data_schemas()
    if layout not in schemas:
        got = f" (got name={layout!r})" if layout else ""
        raise ValueError(f"eval_sets.{name} needs name=<layout>, one of {', '.join(sorted(schemas))}{got}")
    if layout != "synthetic" and not given.get("path"):
        raise ValueError(f"eval_sets.{name} needs path=<file> (the {layout} data to evaluate)")
    if layout == "synthetic" and given.get("path"):
        raise ValueError(f"eval_sets.{name}: name=synthetic generates its traces and reads no file "
                         f"(path={given['path']}); give the file's layout as name= (scsn, flat, instance, ...)")
    known = {f.name for f in dataclasses.fields(schemas[layout])} - set(EVAL_SET_EXCLUDED)
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"eval_sets.{name}.{unknown[0]}: not a key of name={layout} (its keys: "
                         f"{', '.join(sorted(known))})")
    if layout != "synthetic":  # after the key checks: a misspelt key is the first thing to fix
        check_exists(f"eval_sets.{name}.path", given["path"])
    if layout == "synthetic":
        given.setdefault("cache_dir", OmegaConf.select(cfg, "paths.cache_dir", default=None) or "data/cache")
    data = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(schemas[layout]), given), resolve=True)
    data.pop("test_path", None)
    if layout == "synthetic":
        data.pop("path", None)
    return data


def unknown_mode(mode: str | None, model) -> str:
    """``data.unknown=auto``: drop unknown traces for a two-class model, keep them otherwise."""
    if mode in (None, "auto"):
        return "drop" if int(getattr(model, "num_classes", 3)) == 2 else "keep"
    return str(mode)


def build_eval_sets(configs: Mapping[str, Mapping[str, Any]], model, reference) -> dict[str, Any]:
    """Load every eval set the way the test set is read: the model's input window (centred on P, no
    time-shift margin), the normalisation of the training data ``reference``."""
    return {name: _build_eval_set(name, dict(data), model, reference) for name, data in configs.items()}


def _build_eval_set(name: str, data: dict[str, Any], model, reference):
    from .config import build_from_node
    from .failures import one_line, user_error

    data["unknown"] = unknown_mode(data.get("unknown"), model)
    for key in ("path", "cache_dir"):
        if data.get(key):
            data[key] = to_absolute_path(str(data[key]))
    data.update(window_length=int(model.input_length), max_shift=0,
                normalize=getattr(reference, "normalize", data.get("normalize")))
    try:
        dataset = build_from_node(data)
    except Exception as exc:  # bad input: one line naming the set; a bug: as it is
        cause = user_error(exc)
        if cause is None:
            raise
        raise ValueError(f"eval_sets.{name}: {one_line(cause)}") from exc
    _check_fits(name, dataset, reference)
    log.info("eval set %s: %r", name, dataset)
    return dataset


def _check_fits(name: str, dataset, reference) -> None:
    rate, ref_rate = float(dataset.sampling_rate), float(getattr(reference, "sampling_rate", dataset.sampling_rate))
    if abs(rate - ref_rate) > 1e-6 * ref_rate:
        raise ValueError(f"eval_sets.{name}: sampled at {rate:g} Hz, the model was trained on {ref_rate:g} Hz data")
    channels = getattr(reference, "num_channels", dataset.num_channels)
    if dataset.num_channels != channels:
        raise ValueError(f"eval_sets.{name}: {dataset.num_channels} channels, the model reads {channels} "
                         f"(choose them with eval_sets.{name}.components=...)")


# -- eval_sets: scores -------------------------------------------------------------------------------
def evaluate_eval_sets(trainer, sets: Mapping[str, Any], run_dir, options) -> dict[str, dict[str, Any]]:
    """Score every set with the trainer's current model (every rank calls this under DDP); return
    metrics.json's ``eval_sets`` and log one line per set."""
    from .reports import score_dataset

    results = {}
    for name, dataset in sets.items():
        metrics = trainer.evaluate(dataset, return_predictions=True)
        metrics = score_dataset(run_dir, trainer, dataset, metrics, options, f"eval_{name}_predictions.csv")
        metrics["evaluated"] = evaluated_text("all", dataset)
        metrics["dropped"] = dict(getattr(dataset, "dropped", {}) or {})
        results[name] = metrics
        if trainer.is_main:
            log.info("%s", eval_set_line(name, metrics))
            _tensorboard_scalars(trainer, name, metrics)
    return results


def eval_set_line(name: str, metrics: Mapping[str, Any]) -> str:
    """``<name>: accuracy X, up/down accuracy Y (first-break baseline Z) on N traces``."""
    base = metrics.get("baseline")
    baseline = f" (first-break baseline {base['updown_accuracy']:.4f})" if base else ""
    return (f"{name}: accuracy {metrics['accuracy']:.4f}, up/down accuracy {metrics['updown_accuracy']:.4f}"
            f"{baseline} on {metrics.get('num_samples', 0)} traces")


def _tensorboard_scalars(trainer, name: str, metrics: Mapping[str, Any]) -> None:
    writer = getattr(trainer, "writer", None)
    if writer is None:
        return
    step = int(getattr(trainer, "epoch", 0) or 0)
    writer.add_scalar(f"Eval/{name}/accuracy", metrics["accuracy"], step)
    writer.add_scalar(f"Eval/{name}/updown_accuracy", metrics["updown_accuracy"], step)
    if metrics.get("baseline"):
        writer.add_scalar(f"Eval/{name}/baseline_updown_accuracy", metrics["baseline"]["updown_accuracy"], step)


def eval_sets_summary(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Flat numbers for metrics.json's ``summary`` and sweep tables: ``eval_<name>_...``."""
    out: dict[str, Any] = {}
    for name, m in results.items():
        out[f"eval_{name}_accuracy"] = m.get("accuracy")
        out[f"eval_{name}_updown_accuracy"] = m.get("updown_accuracy")
        if m.get("baseline"):
            out[f"eval_{name}_baseline_updown_accuracy"] = m["baseline"]["updown_accuracy"]
    return out


# -- train=false: which traces --------------------------------------------------------------------
def evaluated_text(how: str, dataset) -> str:
    """``test split of <file> (N traces)``, ``all of <file> (N traces)``, ``test file <file> (N traces)``."""
    where = getattr(dataset, "path", None) or type(dataset).__name__
    joint = " " if how.endswith("file") else " of "
    return f"{how}{joint}{where} ({len(dataset)} traces)"


def data_identity(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """What decides which traces a data config holds: its keys but those of ``IDENTITY_IGNORED``,
    with file paths made absolute (against the folder the command runs in)."""
    out = {k: v for k, v in dict(data or {}).items() if k not in IDENTITY_IGNORED}
    for key in ("path", "test_path"):
        if out.get(key):
            out[key] = os.path.abspath(to_absolute_path(str(out[key])))
    return out


def _set_keys(identity: Mapping[str, Any]) -> dict[str, Any]:
    """An identity without its unset keys (a key added to a schema later is unset in older checkpoints)."""
    return {k: v for k, v in identity.items() if v is not None}


def checkpoint_arg(spec: Any) -> str:
    """A checkpoint given on the command line: ``pretrained:<name>`` as it is, a path made absolute
    against the folder the command runs in."""
    from .training.checkpoint import is_pretrained

    text = str(spec)
    return text if is_pretrained(text) else to_absolute_path(text)


def checkpoint_state(cfg: DictConfig) -> dict[str, Any] | None:
    """The checkpoint an evaluation-only run scores (None for a training run)."""
    if cfg.get("train", True) or not cfg.get("ckpt_path"):
        return None
    from .training.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint_arg(cfg.ckpt_path))


def init_state(cfg: DictConfig) -> dict[str, Any] | None:
    """The checkpoint a fine-tuning run starts from (``init_from``; None otherwise, and for a resume,
    which restores its own weights)."""
    if not (cfg.get("train", True) and cfg.get("init_from")) or cfg.get("ckpt_path"):
        return None
    from .training.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint_arg(cfg.init_from))


#: ``data.*`` keys that say where or how the traces are read, not which: giving them still scores the
#: checkpoint's run's data.
_DATA_LOCATION = ("data.cache_dir", "data.preload")


def override_keys(overrides: list[str]) -> list[str]:
    """The keys (or groups) of command-line overrides, without Hydra's ``+``/``++``/``~`` prefixes."""
    return [str(o).split("=", 1)[0].lstrip("+~") for o in overrides if "=" in str(o)]


def names_data(overrides: list[str]) -> bool:
    """Whether the command line chooses the data (``data=...`` or a ``data.<key>``, other than where
    and how it is read)."""
    return any((k == "data" or k.startswith(("data.", "data/"))) and k not in _DATA_LOCATION
               for k in override_keys(overrides))


def adopt_run_data(cfg: DictConfig, state: Mapping[str, Any], overrides: list[str] | None) -> None:
    """train=false without a data option scores the data of the checkpoint's run (its ``run_config``),
    so that ``train=false ckpt_path=<run>/checkpoints/best.ckpt`` reproduces the run's test figures
    whatever ``data.*`` the run was given (where the traces are cached and how they are read stay
    this command's). ``overrides`` None (not under Hydra) or naming the data: ``cfg`` is left as it is."""
    from omegaconf import open_dict

    saved = (state.get("run_config") or {}).get("data")
    if overrides is None or names_data(overrides) or not isinstance(saved, Mapping) or cfg.get("data") is None:
        return
    mine = OmegaConf.to_container(cfg.data, resolve=True)
    identity = state.get("data_identity") or {}  # its files as absolute paths (the run's folder may differ)
    theirs = {**saved, **{k: identity[k] for k in ("path", "test_path") if identity.get(k)},
              **{k.split(".", 1)[1]: mine[k.split(".", 1)[1]] for k in _DATA_LOCATION if k.split(".", 1)[1] in mine}}
    if _set_keys(data_identity(theirs)) == _set_keys(data_identity(mine)):
        return
    with open_dict(cfg):
        cfg.data = OmegaConf.create(theirs)
    log.info("evaluation: the data of the checkpoint's run (%s), as no data option was given "
             "(data=... or data.<key>=... scores other data)", _data_label(theirs))


def adopt_checkpoint(cfg: DictConfig, state: Mapping[str, Any], role: str) -> None:
    """Make ``cfg`` describe the checkpoint's model and input normalisation (evaluation and
    fine-tuning use the weights as they were trained or imported, whatever ``model=`` and
    ``data.normalize`` say); logs what it changed. A checkpoint without a model description, or
    describing a model that is not registered, leaves ``cfg`` as it is."""
    from omegaconf import open_dict

    from .models import MODEL_REGISTRY, Ensemble

    described = state.get("model")
    if not isinstance(described, Mapping) or "name" not in described:
        return
    name = str(described["name"])
    cls = Ensemble if name == "ensemble" else MODEL_REGISTRY.get(name.lower())
    if cls is None:  # e.g. a plain nn.Module trained with the Python API: the config's model is used
        log.warning("%s: the checkpoint's model %r is not a registered model; using model=%s", role, name,
                    OmegaConf.select(cfg, "model._target_", default="?"))
        return
    node = {"_target_": f"{cls.__module__}.{cls.__qualname__}", **dict(described.get("init_kwargs") or {})}
    current = OmegaConf.to_container(cfg.model, resolve=True) if cfg.get("model") is not None else {}
    with open_dict(cfg):
        current = dict(current or {})
        if current != node:
            same = current.get("_target_") == node["_target_"]
            changed = sorted(k for k in set(node) | set(current) if current.get(k) != node.get(k))
            log.info("%s: the model is the checkpoint's, %s (%s)", role, described["name"],
                     "not the config's: differs in " + ", ".join(changed) if same else
                     f"not model={str(current.get('_target_', '?')).rsplit('.', 1)[-1]}")
            cfg.model = OmegaConf.create(node)
        theirs = (state.get("data") or {}).get("normalize")
        if theirs and cfg.get("data") is not None and cfg.data.get("normalize") != theirs:
            log.info("%s: normalize=%s as the checkpoint's weights expect (not data.normalize=%s)", role, theirs,
                     cfg.data.get("normalize"))
            cfg.data.normalize = theirs


def held_out_split(cfg: DictConfig, dataset, state: Mapping[str, Any] | None):
    """``(traces, how)``: the checkpoint's own held-out test split of ``dataset`` when it is the data
    the checkpoint was trained on; None when it is other data (then every trace is scored)."""
    if state is None or cfg.data.get("test_path") or not hasattr(dataset, "split"):
        return None
    theirs = state.get("data_identity") or data_identity((state.get("run_config") or {}).get("data"))
    mine = data_identity(OmegaConf.to_container(cfg.data, resolve=True))
    if not theirs or _set_keys(theirs) != _set_keys(mine):
        return None
    training = state.get("training_config") or {}
    val, test = float(training.get("validation_split", 0.0)), float(training.get("test_split", 0.0))
    if val + test <= 0:
        log.warning("the checkpoint was trained on every trace of this data (no held-out split): scoring all of them")
        return None
    seed = int(training.get("seed", 0))
    _, val_set, test_set = dataset.split(val, test, seed)
    if test_set is None:
        log.warning("the checkpoint's run held out no test split: scoring its validation split")
        return (val_set, "validation split") if val_set is not None else None
    log.info("this is the data the checkpoint was trained on: scoring its held-out test split "
             "(seed %d, %g of the traces)", seed, test)
    return test_set, "test split"


# -- the run header of report.md ---------------------------------------------------------------------
def run_header(run_config: Mapping[str, Any], training: Mapping[str, Any], epochs: Any, best_epoch: Any,
               model: Mapping[str, Any], wall_s: float, checkpoint: str | None = None,
               splits: Mapping[str, int] | None = None) -> list[tuple[str, Any]]:
    """(label, value) rows: model, parameters, optimizer, lr, scheduler, batch, epochs trained, best
    epoch, data, seed, wall time. ``checkpoint``: an evaluation-only run (the training facts are the
    checkpoint's run's)."""
    of_run = " (by the checkpoint's run)" if checkpoint else ""
    rows: list[tuple[str, Any]] = [("evaluation only", f"checkpoint {checkpoint}")] if checkpoint else []
    params = model.get("parameters")
    rows += [("model", model.get("name")), ("parameters", f"{params:,}" if isinstance(params, int) else params),
             ("optimizer", _optimizer(run_config, training)), ("learning rate", _number(training.get("learning_rate"))),
             ("scheduler", _scheduler(run_config, training)), ("batch size", training.get("batch_size")),
             (f"epochs trained{of_run}", f"{epochs} of {training.get('epochs')}" if epochs is not None else None),
             ("best epoch", best_epoch if best_epoch is not None else "-"),
             ("trained on" if checkpoint else "data", _data_label(run_config.get("data"))),
             ("traces", ", ".join(f"{k} {v:,}" for k, v in splits.items()) if splits else None),
             ("seed", training.get("seed", run_config.get("seed"))),
             ("wall time" + (" (this evaluation)" if checkpoint else ""), _wall_time(wall_s))]
    return [(k, v) for k, v in rows if v is not None]


def _optimizer(run_config: Mapping[str, Any], training: Mapping[str, Any]) -> str | None:
    node = run_config.get("optimizer") or {}
    name = str(node.get("_target_", "")).rsplit(".", 1)[-1] or training.get("optimizer")
    if not name:
        return None
    from .training.optim import OPTIMIZERS

    # None (the Python API's default): the optimizer's own value, from the registry
    defaults = getattr(OPTIMIZERS.get(str(training.get("optimizer"))), "defaults", {})
    decay, momentum = (training.get(k) if training.get(k) is not None else defaults.get(k)
                       for k in ("weight_decay", "momentum"))
    extra = [f"weight decay {decay:g}"] if decay else []
    if str(name).lower() == "sgd" and momentum:
        extra.append(f"momentum {momentum:g}")
    return f"{name} ({', '.join(extra)})" if extra else str(name)


def _scheduler(run_config: Mapping[str, Any], training: Mapping[str, Any]) -> str:
    node = run_config.get("scheduler") if "scheduler" in run_config else None
    if not node:
        return str(training.get("lr_scheduler") or "none")
    params = ", ".join(f"{k}={v}" for k, v in node.items() if not str(k).startswith("_"))
    name = str(node.get("_target_", "")).rsplit(".", 1)[-1]
    return f"{name} ({params})" if params else name


def _data_label(data: Mapping[str, Any] | None) -> str | None:
    if not data:
        return None
    if str(data.get("_target_", "")).endswith("synthetic_dataset"):
        n = data.get("num_traces")
        if data.get("max_traces") and n and int(data["max_traces"]) < int(n):
            n = data["max_traces"]
        return f"synthetic, {n} traces generated (seed {data.get('seed')})"
    test = f" (test file {data['test_path']})" if data.get("test_path") else ""
    return f"{data.get('name')}: {data.get('path')}{test}"


def _number(value: Any) -> str | None:
    return f"{value:g}" if isinstance(value, (int, float)) else value


def _wall_time(seconds: float) -> str:
    """The header's wall time, said to end where the report starts: metrics.json's ``wall_time_s``,
    taken when the run ends, also counts the report (baseline, figures) and the eval sets."""
    return f"{_duration(seconds)} up to this report (metrics.json's wall_time_s counts the whole run)"


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


__all__ = ["eval_set_configs", "build_eval_sets", "evaluate_eval_sets", "eval_set_line", "eval_sets_summary",
           "evaluated_text", "data_identity", "checkpoint_arg", "checkpoint_state", "init_state", "adopt_checkpoint",
           "held_out_split", "run_header", "unknown_mode"]
