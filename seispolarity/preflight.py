"""Mistakes in the command itself, found before a run starts: one line each, and no run folder.

``Preflight`` is a Hydra callback (``conf/hydra/default.yaml``): before a single run's folder is
made, it checks what needs no data: ``train=false`` without ``ckpt_path``, a data option without
its ``data.path`` or with one that is not there (or the generated synthetic set given one), the
``trainer`` values (``TrainingConfig``, and a ``trainer.device`` this machine has), the
``eval_sets`` entries, the checkpoints named (``init_from`` and an evaluation's ``ckpt_path``
load, ``pretrained:<name>`` is not resumed), keys added with ``+`` that an option does not take,
the data, augmentation, report and scheduler values, ``trainer=ddp`` outside torchrun, the
synthetic set's cache folder, the ``objective`` and, for a resume, the overrides the checkpoint's
run refuses (``seispolarity.resume``). ``runner.run`` makes the same checks (a multirun's jobs, the
compose API), where a failure then marks the job's folder failed.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import os
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import to_absolute_path
from omegaconf import AnyNode, DictConfig, OmegaConf

from .failures import UsageError, one_line, say, user_error

#: What ``data.path`` is, per layout (``data.name``).
DATA_PATHS = {
    "scsn": "the SCSN HDF5 file of Ross et al. 2018, e.g. scsn_p_2000_2017_6sec_0.5r_fm_train.hdf5 "
            "(data.test_path= for its test file)",
    "flat": "an HDF5 file in the flat layout (X, Y, optional p_pick, snr, evids)",
    "instance": "the INSTANCE folder (SeisBench format: metadata.csv and waveforms.hdf5)",
    "pnw": "the PNW folder (SeisBench format: metadata.csv and waveforms.hdf5)",
    "txed": "the TXED folder (SeisBench format: metadata.csv and waveforms.hdf5)",
    "seisbench": "a SeisBench-format folder (metadata.csv and waveforms.hdf5)",
    "diting": "the DiTing folder (DiTing330km_part_*.hdf5 and its CSV)",
}
FILE_OPTIONS = ("data=flat data.path=<file.hdf5> (our flat layout), data=scsn data.path=<file.hdf5>, or "
                "data=instance|pnw|txed|seisbench|diting data.path=<folder>")


def is_synthetic(data: Any) -> bool:
    return str((data or {}).get("_target_", "")).endswith("synthetic_dataset")


def check_data(data: Any, where: str = "data") -> None:
    """``data.path`` (and ``data.test_path``) there where the layout needs one, none for the generated
    synthetic set."""
    if data is None:
        return

    def value(key: str) -> Any:
        return OmegaConf.select(data, key, default=None) if OmegaConf.is_config(data) else data.get(key)

    path = value("path")
    if is_synthetic(data):
        if path:
            raise UsageError(f"{where}=synthetic generates its traces and reads no file ({where}.path={path}); "
                             f"to train on a file choose its layout: {FILE_OPTIONS}")
        return
    if not path:
        name = str(data.get("name") or "")
        kind = "file" if name.lower() in ("scsn", "flat") else "folder"
        raise UsageError(f"{where}={name} needs {where}.path=<{kind}>: "
                         f"{DATA_PATHS.get(name.lower(), 'the data file or folder')}")
    check_exists(f"{where}.path", path)
    if value("test_path"):
        check_exists(f"{where}.test_path", value("test_path"))


def check_exists(key: str, path: Any) -> None:
    """A data file or folder that is not there: one line naming the key, before any run folder exists
    (relative paths are the user's: the runner never changes the working directory)."""
    if not os.path.exists(str(path)):
        raise UsageError(f"{key}={path}: no such file or directory")


def check_command(cfg: DictConfig) -> None:
    """Everything about ``cfg`` that can be judged without reading data (raises one-line errors)."""
    from .evaluation import eval_set_configs
    from .runner import training_config
    from .training.setup import resolve_device

    if not cfg.get("train", True) and not cfg.get("ckpt_path"):
        raise UsageError("evaluation needs ckpt_path=<checkpoint> (train=false scores a trained model, e.g. "
                         "ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt)")
    check_keys(cfg)  # a misspelt key added with `+` is the first thing to fix
    check_data(cfg.get("data"))
    plain = _without_run_folder(cfg)
    train_config = training_config(plain)  # a bad trainer value: TrainingConfig's one line
    resolve_device(train_config.device)  # trainer.device=cuda on a machine without one
    check_launch(train_config.distributed)
    check_values(plain)
    check_model(plain, command_overrides(cfg))
    eval_set_configs(cfg)
    check_checkpoints(cfg)
    check_objective(cfg)


def command_overrides(cfg: DictConfig) -> list[str] | None:
    """The command line's overrides, unresolved: a value may interpolate the run folder
    (trainer.tensorboard_dir=${paths.output_dir}/tb), not made yet; only their keys are read."""
    overrides = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
    return OmegaConf.to_container(overrides, resolve=False) if overrides is not None else None


def check_model(cfg: DictConfig, overrides: list[str] | None) -> None:
    """A new training run's model builds from the values the command line gives it
    (``model.base_channels=-3``: one line before the run folder). Only where a ``model.<key>`` is
    given: every option's own values build (tests/test_models.py), so a plain start builds no model
    twice; a checkpoint's own model (train=false, a resume, ``init_from``) is the checkpoint's."""
    from .evaluation import override_keys
    from .runner import build_model

    sets_model = any(k.startswith("model.") for k in override_keys(overrides or []))
    if not sets_model or cfg.get("ckpt_path") or cfg.get("init_from") or not cfg.get("train", True) \
            or not OmegaConf.is_dict(cfg.get("model")):
        return
    try:
        values = OmegaConf.to_container(cfg.model, resolve=True)
    except Exception:  # a value that resolves only inside the run (e.g. ${hydra:...}): the run builds it
        return
    build_model(OmegaConf.create({"model": values}))


def check_keys(cfg: DictConfig) -> None:
    """Keys that ``+key=value`` added to a node and its target does not take (the schemas refuse a
    misspelt key at compose time, but ``+`` is how Hydra's own message says to add one)."""
    from .config import NOT_TRAINER_KEYS, baseline_schema, data_schemas

    for where in ("model", "trainer", "augment", "report", "data"):
        node = cfg.get(where)
        if not OmegaConf.is_dict(node):
            continue
        if where == "data":
            layout = "synthetic" if is_synthetic(node) else str(node.get("name") or "").lower()
            schema = data_schemas().get(layout)
            known = {f.name for f in dataclasses.fields(schema)} if schema is not None else None
        else:
            known = _keywords(node.get("_target_"))
            if where == "trainer" and known is not None:  # set by other groups, ckpt_path and init_from
                known -= set(NOT_TRAINER_KEYS)
        _refuse_unknown(cfg, where, set(node) - {"_target_"}, known)
    params = OmegaConf.select(cfg, "report.baseline_params", default=None)
    if OmegaConf.is_dict(params):
        _refuse_unknown(cfg, "report.baseline_params", set(params),
                        {f.name for f in dataclasses.fields(baseline_schema())})


def _keywords(target: Any) -> set[str] | None:
    """The keyword arguments ``target`` (a dotted path) takes, or None where it takes any."""
    if not target:
        return None
    from hydra.utils import get_method

    params = inspect.signature(get_method(str(target))).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _refuse_unknown(cfg: DictConfig, where: str, keys: set[str], known: set[str] | None) -> None:
    unknown = sorted(keys - known) if known is not None else []
    if not unknown:
        return
    key, known = unknown[0], known - {"_target_"}
    choice = OmegaConf.select(cfg, f"hydra.runtime.choices.{where}", default=None)
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f"did you mean {where}.{close[0]}? " if close else ""
    raise UsageError(f"{where}.{key}: not a key of {where}{f'={choice}' if choice else ''} "
                     f"({hint}its keys: {', '.join(sorted(known))})")


def check_values(cfg: DictConfig) -> None:
    """The data, augmentation and report values the run would refuse once its folder exists."""
    from .config import build_from_node
    from .data.dataset import check_options
    from .reports import ReportConfig

    data = cfg.get("data")
    if data is not None:
        check_options(normalize=data.get("normalize", "peak"), unknown=data.get("unknown", "auto"),
                      nan_policy=data.get("nan_policy", "error"), max_traces=data.get("max_traces"),
                      unknown_modes=("auto", "keep", "drop"), prefix="data.")
        if is_synthetic(data):
            check_synthetic(data)
    if cfg.get("augment") is not None:
        build_from_node(cfg.augment)  # AugmentConfig: its values checked where it is made
    if cfg.get("report") is not None:
        ReportConfig.from_any(OmegaConf.to_container(cfg.report, resolve=True))


def check_synthetic(data: DictConfig) -> None:
    """The generated set's size and the cache folder it is written to."""
    from .folders import writable_folder_problem

    n = data.get("num_traces")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"data.num_traces={n!r}: expected a whole number >= 1")
    cache = str(data.get("cache_dir") or "data/cache")
    problem = writable_folder_problem(to_absolute_path(cache))
    if problem:
        raise UsageError(f"data.cache_dir={cache} (paths.cache_dir): {problem}; the synthetic set is cached "
                         f"there: set paths.cache_dir=<a writable folder>")


def check_launch(distributed: Any) -> None:
    """``trainer=ddp`` (distributed=true) started without torchrun (a submitit task exports
    torchrun's variables itself, later: ``distributed.export_submitit_env``)."""
    from .training.distributed import launch_problem

    problem = None if os.environ.get("SUBMITIT_EXECUTOR") else launch_problem(distributed)
    if problem:
        raise UsageError(problem)


def check_objective(cfg: DictConfig) -> None:
    """``objective=`` names a number the run will report (else the run would fail at its very end)."""
    from .runner import objective_names

    names = objective_names(list((cfg.get("eval_sets") or {}).keys()))
    if str(cfg.get("objective")) not in names:
        close = difflib.get_close_matches(str(cfg.get("objective")), names, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise UsageError(f"objective={cfg.get('objective')}: not a number the run reports ({hint}"
                         f"one of {', '.join(names)})")


def check_checkpoints(cfg: DictConfig) -> None:
    """``pretrained:<name>`` is not a run to resume; ``init_from`` names a loadable checkpoint."""
    from .evaluation import checkpoint_arg
    from .training.checkpoint import is_pretrained, load_checkpoint

    train, ckpt, init = cfg.get("train", True), cfg.get("ckpt_path"), cfg.get("init_from")
    if train and ckpt and is_pretrained(str(ckpt)):
        raise UsageError(f"ckpt_path={ckpt} with train=true would resume a run, and packaged weights are not one: "
                         f"fine-tune them with init_from={ckpt}, or evaluate them with train=false")
    if train and init and not ckpt:
        load_checkpoint(checkpoint_arg(init))  # missing, damaged or unknown: one line, before the run folder
    if not train and ckpt:  # the checkpoint an evaluation scores: the same
        load_checkpoint(checkpoint_arg(ckpt))


def _without_run_folder(cfg: DictConfig) -> DictConfig:
    """``cfg`` without its ``hydra`` node, resolving before Hydra has made the run folder: a copy
    (``paths.output_dir`` then reads ``<run folder>``), or ``cfg`` itself where it has no ``hydra``
    node and resolves as it is (the runner's check; the callers only read it)."""
    hydra = cfg._get_node("hydra", throw_on_missing_key=False) if "hydra" in cfg else None
    if hydra is None:
        try:
            OmegaConf.select(cfg, "paths.output_dir", throw_on_resolution_failure=True)
            return cfg
        except Exception:  # no run folder yet: the copy below
            pass
    # the copy leaves out the hydra node (most of a composed config), which it would drop anyway
    cfg = copy.deepcopy(cfg, {id(hydra): AnyNode(None)} if hydra is not None else None)
    OmegaConf.set_readonly(cfg, False)
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra", None)
    try:
        OmegaConf.select(cfg, "paths.output_dir", throw_on_resolution_failure=True)
    except Exception:  # no run folder yet
        cfg.paths.output_dir = "<run folder>"
    return cfg


def check_resume(cfg: DictConfig, config_name: str | None) -> None:
    """A resume (train=true, ckpt_path): the checkpoint loads and the overrides fit its run."""
    if not (cfg.get("train", True) and cfg.get("ckpt_path")):
        return

    from .resume import resumed_config
    from .training.checkpoint import load_checkpoint

    state = load_checkpoint(to_absolute_path(str(cfg.ckpt_path)))
    resumed_config(_without_run_folder(cfg), state, config_name, ckpt=str(cfg.ckpt_path),
                   overrides=command_overrides(cfg))


def slurm_problem(cfg: DictConfig) -> str | None:
    """A SLURM launcher (``hydra/launcher=slurm_gpu`` / ``submitit_slurm``) where SLURM's ``sbatch`` is
    not on PATH: submitit would fail with a long traceback after the sweep folder is made."""
    import shutil

    target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    if not target.endswith("SlurmLauncher") or shutil.which("sbatch"):
        return None
    choice = OmegaConf.select(cfg, "hydra.runtime.choices", default={}) or {}
    return (f"hydra/launcher={choice.get('hydra/launcher', 'submitit_slurm')}: no SLURM here (sbatch is not on "
            f"PATH); run the sweep on the cluster's login node, or try it here with hydra/launcher=submitit_local")


class Preflight(Callback):
    """Hydra callback: a single run's command checked before its folder is made (one line, exit 2
    for a command that cannot run as given, 1 for a bad value); a sweep's launcher before it starts."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        problem = slurm_problem(config)
        if problem:
            say(f"error: {problem}")
            raise SystemExit(2)

    def on_run_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        try:
            check_command(config)
            check_resume(config, config_name)
        except Exception as exc:  # bad input: one line; anything else: the run reports it
            cause = user_error(exc)
            if cause is None:
                return
            say(f"error: {one_line(cause)}")
            raise SystemExit(getattr(cause, "exit_code", 1)) from None


__all__ = ["check_data", "check_command", "check_resume", "Preflight", "DATA_PATHS"]
