"""Resuming a run: ``python train.py ckpt_path=<run>/checkpoints/last.ckpt`` (train=true).

A resumed run is the checkpoint's run, so its config is the one the checkpoint stores
(``run_config``, the resolved config of the run that wrote it), not what ``conf/`` composes today:
a resume command needs no overrides at all. What the command line changes is compared with it:

- keys that only say how long, where or how fast the run goes on (``RESUMABLE``: more epochs, the
  device, DataLoader workers, logging, the folders, what to evaluate afterwards) are applied and
  logged;
- ``trainer.batch_size`` is per process, and the number of processes is torchrun's, not the config's:
  it may change when processes x batch_size (the global batch of each optimiser step) stays the
  run's, e.g. a 2-process DDP run with batch 8 resumed in one process with batch 16
  (docs/scaling.md), and the resumed run follows the same global batches; a change that alters the
  global batch is refused (a resume in another number of processes without a batch size override
  is logged, with the batch size that keeps the global batch);
- any other key the command line sets to a value the run did not have (``model=ross``, ``lr=...``,
  ``optimizer=adam`` for an SGD run, ``data.num_traces=...``) is refused in one line that lists
  them (exit 2): that would be another run (leave out ``ckpt_path`` to start one);
- ``trainer.epochs`` below the epochs the run has trained is refused too: it would train nothing,
  yet config.yaml would say the lower number and report.md "epochs trained: 2 of 1".

So config.yaml, the checkpoints, metrics.json and report.md of a run folder always describe one run.
"""
from __future__ import annotations

import copy
import logging
import os
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from .failures import UsageError

log = logging.getLogger("seispolarity.runner")

#: Keys a resume may change: how long, where and how fast the run goes on, and what is evaluated
#: after it. A prefix covers its whole subtree.
RESUMABLE = ("trainer.epochs", "trainer.device", "trainer.num_workers", "trainer.pin_memory",
             "trainer.max_steps_per_epoch", "trainer.log_every", "trainer.show_progress", "trainer.save_every",
             "trainer.save_best_only", "trainer.early_stopping_patience", "trainer.distributed", "trainer.compile",
             "trainer.save_dir", "trainer.tensorboard_dir", "data.preload", "data.cache_dir",
             "train", "test", "ckpt_path", "tags", "objective", "task_name", "report", "eval_sets", "paths")
#: Keys always taken from this command, not from the checkpoint: where this run's files go, and
#: whether this invocation trains under DDP (torchrun's choice: a run trained with trainer=ddp
#: resumes in one process with a plain ``python train.py ckpt_path=...``, docs/scaling.md).
LOCATION = ("paths", "trainer.save_dir", "trainer.tensorboard_dir", "data.cache_dir", "train", "ckpt_path",
            "trainer.distributed")
#: Per process: may change on resume when the global batch (processes x batch_size) does not.
BATCH_SIZE = ("trainer", "batch_size")
_ABSENT = object()


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def _covered(path: tuple, prefixes: tuple[str, ...]) -> bool:
    key = _dotted(path)
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def flatten(node: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    """Leaf paths (tuples of keys) of a plain container; an empty mapping is a leaf."""
    if isinstance(node, Mapping) and node:
        out: dict[tuple, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, prefix + (key,)))
        return out
    return {prefix: node}


def _set(tree: dict, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        node = tree.get(key)
        if not isinstance(node, dict):
            node = tree[key] = {}
        tree = node
    if value is _ABSENT:
        tree.pop(path[-1], None)
    else:
        tree[path[-1]] = value


def _plain(cfg: DictConfig, resolve: bool) -> dict:
    """``cfg`` as plain data without its ``hydra`` node; ``paths.output_dir`` stands in as a string
    where Hydra has not set the run folder yet (a check before the run starts)."""
    cfg = copy.deepcopy(cfg)
    with _writable(cfg):
        cfg.pop("hydra", None)
        if resolve:
            try:
                OmegaConf.select(cfg, "paths.output_dir", throw_on_resolution_failure=True)
            except Exception:  # HydraConfig not set yet
                cfg.paths.output_dir = "<run folder>"
    return OmegaConf.to_container(cfg, resolve=resolve)


class _writable:
    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def __enter__(self):
        self.flags = (OmegaConf.is_struct(self.cfg), OmegaConf.is_readonly(self.cfg))
        OmegaConf.set_struct(self.cfg, False)
        OmegaConf.set_readonly(self.cfg, False)
        return self.cfg

    def __exit__(self, *exc):
        OmegaConf.set_struct(self.cfg, self.flags[0])
        return False


def _composed_defaults(config_name: str | None) -> dict | None:
    """``conf/`` composed without any override (what the command line changes is the difference)."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra().is_initialized():
        return None
    return _plain(compose(config_name=config_name or "train"), resolve=False)


def _is_group(name: str) -> bool:
    from hydra.core.global_hydra import GlobalHydra

    try:
        return bool(GlobalHydra.instance().hydra.config_loader.repository.group_exists(name))
    except Exception:  # not under Hydra: the conf/ folder
        return os.path.isdir(os.path.join(os.environ.get("SEISPOLARITY_ROOT", "."), "conf", name))


def explicit_paths(overrides: list[str] | None, leaves: set[tuple]) -> set[tuple]:
    """Leaves the command line names, even with a value equal to the default: a key override's
    subtree; for a group option (``optimizer=adam``), the node's ``_target_`` (and a data set's
    ``name``), i.e. which option it is (its other keys count where they differ from the defaults)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out: set[tuple] = set()
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides or []))
    except Exception:  # Hydra has parsed them already; be safe
        return out
    for override in parsed:
        key = str(override.key_or_group)
        if key.startswith("hydra") or override.is_sweep_override():
            continue
        if _is_group(key):
            node = key.replace("/", ".")
            wanted = {f"{node}._target_", f"{node}.name", node}
            out |= {leaf for leaf in leaves if _dotted(leaf) in wanted}
        else:
            out |= {leaf for leaf in leaves if _dotted(leaf) == key or _dotted(leaf).startswith(key + ".")}
    return out


def _absolute(path: Any) -> Any:
    from hydra.utils import to_absolute_path

    return os.path.abspath(to_absolute_path(str(path))) if path else path


def _show(value: Any, target: bool = False) -> str:
    if value is _ABSENT:
        return "(not set)"
    if value is None:
        return "none"
    if target and isinstance(value, str):
        return value.rsplit(".", 1)[-1]  # a _target_: its class or function name
    return str(value)


def _changed_paths(cfg: DictConfig, config_name: str | None, overrides: list[str] | None,
                   known: set[tuple]) -> set[tuple]:
    """The config paths this command sets: those differing from the composed defaults (every path
    when not under Hydra) and those named on the command line (``known``: the paths that exist)."""
    raw_leaves = flatten(_plain(cfg, resolve=False))
    defaults = _composed_defaults(config_name)
    if defaults is None:  # not under Hydra: every key is compared
        changed = set(raw_leaves)
    else:
        default_leaves = flatten(defaults)
        changed = {p for p in set(raw_leaves) | set(default_leaves)
                   if raw_leaves.get(p, _ABSENT) != default_leaves.get(p, _ABSENT)}
    return changed | explicit_paths(overrides, known)


def resumed_config(cfg: DictConfig, state: Mapping[str, Any], config_name: str | None = None,
                   ckpt: str | None = None, overrides: list[str] | None = None) -> tuple[DictConfig, list[str]]:
    """The config of a resumed run: the checkpoint's ``run_config`` with the command line's
    ``RESUMABLE`` changes (listed in the returned notes). Raises ``UsageError`` naming every other
    key the command line sets to a value the checkpoint's run did not have."""
    saved = state.get("run_config")
    ckpt = ckpt or str(cfg.get("ckpt_path"))
    if not isinstance(saved, Mapping) or not saved:
        log.warning("%s holds no run config (written by the Python API?): resuming with this command's config", ckpt)
        _check_epochs(ckpt, state, OmegaConf.select(cfg, "trainer.epochs", default=None))
        return cfg, []
    current = _plain(cfg, resolve=True)
    saved_leaves, current_leaves = flatten(dict(saved)), flatten(current)
    changed = _changed_paths(cfg, config_name, overrides, set(current_leaves) | set(saved_leaves))
    identity = state.get("data_identity") or {}
    final = copy.deepcopy(dict(saved))
    notes: list[str] = []
    refused: dict[tuple, tuple[Any, Any]] = {}
    batch_changed = False
    for path in sorted(changed | {p for p in current_leaves if _covered(p, LOCATION)}, key=_dotted):
        now, then = current_leaves.get(path, _ABSENT), _saved(saved_leaves, path)
        if now is _ABSENT and any(len(p) > len(path) and p[:len(path)] == path for p in current_leaves):
            continue  # a node here and a null in the defaults (scheduler=step): its leaves are compared
        if path in (("data", "path"), ("data", "test_path")):
            then = identity.get(path[1], _absolute(then) if then is not _ABSENT else then)
            if path in changed and _absolute(now) != then and not (now in (None, _ABSENT) and then in (None, _ABSENT)):
                refused[path] = (now, then)
            continue
        if _covered(path, LOCATION):
            _set(final, path, now)
        elif path == BATCH_SIZE and now != then:
            _set(final, path, now)  # judged below (_global_batch), with the resumed run's processes
            batch_changed = True
        elif _covered(path, RESUMABLE):
            if now != then:
                _set(final, path, now)
                notes.append(f"{_dotted(path)}: {_show(then)} -> {_show(now)}")
        elif now != then:
            refused[path] = (now, then)
    note, problem = _global_batch(saved, final, state.get("world_size"), batch_changed)
    if problem is not None:
        refused[BATCH_SIZE] = (current_leaves.get(BATCH_SIZE), problem)
    elif note is not None:
        notes.append(note)
    for key, value in current.items():  # top-level keys newer than the checkpoint's run (e.g. eval_sets)
        final.setdefault(key, value)
    for key in ("path", "test_path"):  # absolute: the resume may run from another folder
        if identity.get(key) and isinstance(final.get("data"), dict):
            final["data"][key] = identity[key]
    if refused:
        raise UsageError(_refusal(ckpt, refused))
    _check_epochs(ckpt, state, (final.get("trainer") or {}).get("epochs"))
    resumed = OmegaConf.create(final)
    OmegaConf.set_struct(resumed, True)
    return resumed, notes


def _check_epochs(ckpt: str, state: Mapping[str, Any], epochs: Any) -> None:
    """Refuse ``trainer.epochs`` below the epochs the run has trained: nothing would be trained, yet
    the run's config.yaml would say the lower number and report.md "epochs trained: 2 of 1"."""
    trained = int(state.get("epoch") or 0)
    if isinstance(epochs, int) and epochs < trained:
        raise UsageError(f"trainer.epochs={epochs} is below the {trained} epochs this run has already trained "
                         f"({ckpt}); leave trainer.epochs out, or give {trained} or more, to resume it (train=false "
                         f"ckpt_path=... evaluates it)")


def _processes(config: Mapping[str, Any]) -> int:
    """How many processes the resumed run trains in: torchrun's WORLD_SIZE, unless DDP is switched off."""
    distributed = (config.get("trainer") or {}).get("distributed", "auto")
    if distributed is False or distributed == "off":
        return 1
    return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def _global_batch(saved: Mapping[str, Any], final: Mapping[str, Any], processes_then: Any,
                  overridden: bool) -> tuple[str | None, str | None]:
    """(a note for the log, a refusal) about the global batch, processes x ``trainer.batch_size``.

    A ``trainer.batch_size`` override is applied (and noted) when the global batch stays the run's,
    and refused otherwise. Without one, a change of the process count alone is noted with the batch
    size that would keep the global batch. A checkpoint that does not record its processes (written
    before they were saved) is taken at its word."""
    then, now = (saved.get("trainer") or {}).get("batch_size"), (final.get("trainer") or {}).get("batch_size")
    processes_now = _processes(final)
    if processes_then is None or not isinstance(then, int) or not isinstance(now, int):
        note = (f"trainer.batch_size: {_show(then)} -> {_show(now)} (per process; the checkpoint does not say how "
                f"many processes its run had: keep processes x batch_size to follow its global batches)")
        return (note if overridden else None), None
    before, after = then * int(processes_then), now * processes_now
    if before == after:
        note = (f"trainer.batch_size: {then} -> {now} (per process; the same global batch {before}: "
                f"{processes_then} x {then} -> {processes_now} x {now})")
        return (note if overridden else None), None
    if overridden:
        return None, (f"{then} per process x {processes_then} processes, a global batch of {before}; "
                      f"here {processes_now} x {now}")
    keep = (f"trainer.batch_size={before // processes_now} keeps it" if before % processes_now == 0
            else f"no batch size keeps it in {processes_now} processes")
    return (f"global batch: {before} -> {after} ({processes_then} processes x {then} -> {processes_now} x {now}; "
            f"{keep})"), None


def _saved(leaves: Mapping[tuple, Any], path: tuple) -> Any:
    """The checkpoint's run's value at ``path``: a leaf, the null node above it (e.g. ``scheduler:
    null``), or the option below it (its ``_target_``)."""
    if path in leaves:
        return leaves[path]
    for i in range(len(path) - 1, 0, -1):
        if path[:i] in leaves:
            return leaves[path[:i]]
    return leaves.get(path + ("_target_",), _ABSENT)


def _refusal(ckpt: str, refused: Mapping[tuple, tuple[Any, Any]]) -> str:
    """One line: what differs (a swapped group once, by its class), and what may change."""
    items, seen_nodes = [], set()
    for path, (now, then) in sorted(refused.items(), key=lambda kv: (kv[0][-1] != "_target_", _dotted(kv[0]))):
        node = path[:-1]
        if node in seen_nodes or path in seen_nodes:
            continue
        if path[-1] == "_target_":
            seen_nodes.add(node)
            items.append(f"{_dotted(node)}={_show(now, True)} (the run: {_show(then, True)})")
        else:
            items.append(f"{_dotted(path)}={_show(now)} (the run: {_show(then)})")
    shown = "; ".join(items[:5]) + (f"; and {len(items) - 5} more" if len(items) > 5 else "")
    return (f"{ckpt} resumes its own run, whose config differs from this command's: {shown}. A resume may change "
            f"only trainer.epochs, trainer.device, trainer.num_workers, trainer.max_steps_per_epoch, logging, "
            f"the folders, test, report and eval_sets, and trainer.batch_size when processes x batch_size stays "
            f"the same; leave the other overrides out (the checkpoint's run config "
            f"is used), or leave out ckpt_path to start a new run")


__all__ = ["RESUMABLE", "LOCATION", "BATCH_SIZE", "resumed_config", "flatten"]
