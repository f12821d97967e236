"""Structured-config schemas for the Hydra runner (the one library module that imports Hydra).

Each option in ``conf/<group>/<option>.yaml`` starts from a schema stored here in the ConfigStore
under ``schema/<group>/<option>`` (a group of its own, so schemas stay out of the user's option
lists). Schemas for models, data sets, the trainer and augmentations are derived from the Python
signatures they configure, and those of optimizers and schedulers from the library's registry
(``seispolarity.training.optim``), so a new constructor argument or registry keyword is a new,
type-checked config key with no second definition to keep in step. Bad overrides (``lr=abc``,
``trainer.epochs=1.5``, ``optimizer.momentum=0.9`` with Adam) therefore fail at compose time with
Hydra's own message.
"""
from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING

from .training.optim import DEFAULT_LR, OPTIMIZER_FIELDS, SCHEDULER_FIELDS

_SIMPLE = (int, float, str, bool)


def _omegaconf_type(tp: Any) -> Any:
    """Map a Python annotation to one OmegaConf can validate (else ``Any``)."""
    if tp in _SIMPLE:
        return tp
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(rest) < len(args):
            inner = _omegaconf_type(rest[0])
            return Any if inner is Any else Optional[inner]
        return Any
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        inner = [a for a in args if a is not Ellipsis]
        elem = _omegaconf_type(inner[0]) if len(set(inner)) == 1 else Any
        return List[elem if elem in _SIMPLE else Any]
    if origin in (dict, typing.Mapping) or tp is dict:
        return Dict[str, Any]
    return Any


def _field(tp: Any, default: Any) -> tuple[Any, Any]:
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return tp, field(default_factory=default)
    if isinstance(default, (list, tuple)):
        value = list(default)
        return tp, field(default_factory=lambda v=value: list(v))
    if isinstance(default, dict):
        value = dict(default)
        return tp, field(default_factory=lambda v=value: dict(v))
    return tp, field(default=default)


def schema_from_callable(name: str, target: Callable | str, *sources: Callable, exclude: tuple[str, ...] = (),
                         overrides: dict[str, tuple[Any, Any]] | None = None, partial: bool = False) -> type:
    """A dataclass with ``_target_`` and one typed field per keyword parameter of ``sources``.

    ``overrides`` maps a field name to ``(type, default)`` (e.g. an interpolation), and may add
    fields; ``exclude`` drops parameters the runner fills in itself.
    """
    overrides = dict(overrides or {})
    target_path = target if isinstance(target, str) else f"{target.__module__}.{target.__qualname__}"
    fields_: dict[str, tuple[Any, Any]] = {"_target_": (str, field(default=target_path))}
    if partial:
        fields_["_partial_"] = (bool, field(default=True))
    for source in sources:
        if dataclasses.is_dataclass(source):
            hints = typing.get_type_hints(source)
            params = [(f.name, hints.get(f.name, Any),
                       f.default if f.default is not dataclasses.MISSING else
                       (f.default_factory() if f.default_factory is not dataclasses.MISSING else MISSING))
                      for f in dataclasses.fields(source)]
        else:
            fn = source.__init__ if inspect.isclass(source) else source
            hints = typing.get_type_hints(inspect.unwrap(fn))
            params = [(p.name, hints.get(p.name, Any), MISSING if p.default is p.empty else p.default)
                      for p in inspect.signature(inspect.unwrap(fn)).parameters.values()
                      if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        for pname, tp, default in params:
            if pname in exclude or pname in fields_:
                continue
            fields_[pname] = _field(_omegaconf_type(tp), default)
    for pname, (tp, default) in overrides.items():
        fields_[pname] = _field(tp, default)
    return _schema_class(name, [(k, t, f) for k, (t, f) in fields_.items()])


def _schema_class(name: str, fields_: list) -> type:
    """A dataclass that describes fields: OmegaConf reads a schema's fields and defaults, and builds
    one only as a nested default (``__init__``), never prints or compares one, so no ``__repr__`` or
    ``__eq__`` is generated (each is an ``exec``: ~0.6 ms of the ~1.6 ms a class costs, times the
    ~20 schemas of every start)."""
    return dataclasses.make_dataclass(name, fields_, repr=False, eq=False)


# -- optimizers and schedulers: generated from the one registry, seispolarity.training.optim ------
def registry_schema(name: str, entry: Any, extra: dict[str, tuple[Any, Any]] | None = None) -> type:
    """``_target_`` (the torch class), ``_partial_`` and one typed field per keyword of a registry
    entry (``optim.Factory``), with the registry's default; ``T_max``'s "the run's epochs" is
    ``${trainer.epochs}``. The runner turns the node back into ``TrainingConfig`` fields with
    ``optim.fields_from_node``; the node is also a valid ``_partial_`` for ``instantiate``."""
    from .training import optim

    fields_: dict[str, tuple[Any, Any]] = dict(extra or {})
    for key, default in entry.defaults.items():
        if default is optim.EPOCHS:
            fields_[key] = (int, II("trainer.epochs"))
        else:
            fields_[key] = (_omegaconf_type(type(default)) if not isinstance(default, tuple)
                            else List[float], default)
    return schema_from_callable(name, entry.target, overrides=fields_, partial=True)


def optimizer_schemas() -> dict[str, type]:
    """``schema/optimizer/<name>`` for each ``optim.OPTIMIZERS`` entry; ``lr`` is ``${lr}``."""
    from .training import optim

    return {name: registry_schema(f"{entry.cls.__name__}Schema", entry, {"lr": (float, II("lr"))})
            for name, entry in optim.OPTIMIZERS.items()}


def scheduler_schemas() -> dict[str, type]:
    """``schema/scheduler/<name>`` for each ``optim.SCHEDULERS`` entry."""
    from .training import optim

    return {name: registry_schema(f"{entry.cls.__name__}Schema", entry)
            for name, entry in optim.SCHEDULERS.items()}


@dataclass
class PathsSchema:
    root_dir: str = MISSING
    data_dir: str = MISSING
    cache_dir: str = MISSING
    log_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class RunSchema:
    """The top level of ``conf/train.yaml``."""

    task_name: str = "train"
    seed: int = 42
    lr: float = DEFAULT_LR  # interpolated into the optimizer (optimizer.lr: ${lr})
    train: bool = True
    test: bool = True
    ckpt_path: Optional[str] = None
    init_from: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    objective: str = "val_accuracy"
    data: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None
    trainer: Any = MISSING
    augment: Any = None
    paths: PathsSchema = field(default_factory=PathsSchema)
    report: Any = None


def _data_schemas() -> dict[str, type]:
    from .data import dataset, presets
    from .data.readers import READERS
    from .data.synthetic import SyntheticConfig

    common = {"unknown": (str, "auto"), "test_path": (Optional[str], None),
              # untyped, default null: `data.filters={snr: [10, null]}` sets a whole dict (a typed {}
              # default is struct and refuses new keys); label maps take int keys ({0: 1, 1: 0, 2: 2}) or words
              "filters": (Any, None), "label_map": (Any, None)}
    runner_filled = ("window_length", "max_shift", "reader_options", "preset")
    out = {}
    knobs = schema_from_callable("SyntheticKnobs", "builtins.dict", SyntheticConfig)
    out["synthetic"] = schema_from_callable(
        "SyntheticDataSchema", presets.synthetic_dataset, presets.synthetic_dataset, dataset.WaveformDataset,
        exclude=runner_filled + ("path", "name", "knobs"),
        # path: never read (the set is generated); a key so that `data.path=...` reaches the runner's
        # one-line explanation instead of Hydra's "Key 'path' not in 'SyntheticDataSchema'"
        overrides={**common, "knobs": (knobs, knobs), "path": (Optional[str], None)})
    for name, factory in READERS.items():
        if name == "synthetic":
            continue
        reader_cls = getattr(factory, "func", factory)
        out[name] = schema_from_callable(
            f"{name.title()}DataSchema", dataset.WaveformDataset, dataset.WaveformDataset, reader_cls,
            exclude=runner_filled, overrides={**common, "path": (str, MISSING), "name": (str, name)})
    return out


#: Keys of a data node that an eval set does not take: the layout comes from ``name``, and an eval
#: set is one file (no ``test_path``).
EVAL_SET_EXCLUDED = ("_target_", "test_path")


def data_schemas() -> dict[str, type]:
    """The schema of each ``data`` option (``conf/data/<option>.yaml``), built once."""
    if not hasattr(data_schemas, "cache"):
        data_schemas.cache = _data_schemas()
    return data_schemas.cache


def eval_set_schema(schemas: dict[str, type]) -> type:
    """One entry of ``eval_sets``: every key of every data option, optional (null = not given), typed
    where the options agree. Which keys the chosen layout (``name``) takes is checked by the runner."""
    types_: dict[str, Any] = {"name": str}
    for schema in schemas.values():
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            if f.name in EVAL_SET_EXCLUDED:
                continue
            tp = hints.get(f.name, Any)
            types_[f.name] = tp if types_.get(f.name, tp) == tp else Any
    fields_ = [(k, Any if tp is Any else Optional[tp], field(default=None))
               for k, tp in types_.items()]
    return _schema_class("EvalSetSchema", fields_)


def run_schema(schemas: dict[str, type]) -> type:
    """``RunSchema`` plus ``eval_sets``: named extra test sets, each validated at compose time. The
    mapping is not in struct mode, so ``'eval_sets={toc2me: {...}}'`` adds sets (an experiment's too)."""
    from omegaconf import DictConfig

    entry = eval_set_schema(schemas)
    default = field(default_factory=lambda: DictConfig({}, element_type=entry, flags={"struct": False}))
    return dataclasses.make_dataclass("RunSchema", [("eval_sets", Dict[str, entry], default)], bases=(RunSchema,))


def _output_dir() -> str:
    """``${seispolarity.output_dir:}`` (``paths.output_dir``): the job's folder, Hydra's
    ``runtime.output_dir``; before a job runs (``python train.py --cfg job --resolve``), the folder
    a run would get (Hydra leaves ``runtime.output_dir`` unset then)."""
    import os

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    hydra = HydraConfig.get()
    output_dir = OmegaConf.select(hydra, "runtime.output_dir", default=None)
    if output_dir:
        return str(output_dir)
    if hydra.mode == RunMode.MULTIRUN:
        return os.path.join(os.path.abspath(str(hydra.sweep.dir)), "<job number>")
    return os.path.abspath(str(hydra.run.dir))


#: What ``python train.py --help`` says after a group's options.
HELP_NOTES = {
    "optimizer": "lr=... sets the learning rate", "trainer": "trainer.epochs=20 trainer.batch_size=64 ...",
    "augment": "training-time flips, noise, shifts", "report": "report.md, PNGs, first-break baseline",
    "debug": "a seconds-long smoke run; overfit one batch", "experiment": "named presets",
    "recipe": "a model with the lr, batch size and epochs it learns at",
    "hparams_search": "an Optuna sweep, no -m needed", "paths": "paths.log_dir=... moves the run folders",
    "hydra/launcher": "how sweep jobs run",
}


def _help_page(_root_: Any) -> str:
    """``${seispolarity.help_page:}``, the ``--help`` template: the page (``hydra.help.header``) with
    ``{groups}`` replaced by the config groups (``_help_groups``)."""
    from omegaconf import OmegaConf

    page = str(OmegaConf.select(_root_, "hydra.help.header", default="") or "")
    return page.replace("{groups}", _help_groups(_root_))


def _help_groups(_root_: Any) -> str:
    """The config groups of ``conf/`` with their options, the chosen (default) one first; the
    internal ``schema/*`` groups left out."""
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    loader = GlobalHydra.instance().hydra.config_loader
    choices = dict(OmegaConf.select(_root_, "hydra.runtime.choices", default=None) or {})
    first = ["data", "model", "optimizer", "scheduler", "trainer", "augment", "report", "debug", "experiment",
             "recipe", "hparams_search", "paths"]
    found = set(loader.list_groups("")) - {"hydra", "schema"}
    groups = [g for g in first if g in found] + sorted(found - set(first)) + ["hydra/launcher"]
    rows = []
    for group in groups:
        options = sorted(loader.get_group_options(group))
        chosen = choices.get(group)
        ordered = ([chosen] if chosen in options else []) + [o for o in options if o != chosen]
        rows.append((group, ", ".join(ordered), f"({HELP_NOTES[group]})" if group in HELP_NOTES else ""))
    return "\n".join(f"  {g:<15} {o}  {n}".rstrip() for g, o, n in rows)


def register_resolvers() -> None:
    """OmegaConf resolvers the configs in ``conf/`` use (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("seispolarity.output_dir"):
        OmegaConf.register_new_resolver("seispolarity.output_dir", _output_dir)
    if not OmegaConf.has_resolver("seispolarity.help_page"):
        OmegaConf.register_new_resolver("seispolarity.help_page", _help_page)


register_resolvers()  # on import: a launcher's worker process resolves the config without train.py


class _Deferred:
    """A config of the ConfigStore made when Hydra first opens it (``_LazyGroup``): the ``OmegaConf.structured``
    node of ``build()``, as ``ConfigStore.store`` would have made it. The copies Hydra makes of the
    store (one per composition) share it; Hydra deep-copies a node it loads, so the shared one stays
    untouched."""

    def __init__(self, group: str | None, name: str, build: Callable[[], Any], package: str | None = None,
                 provider: str | None = None) -> None:
        self.group, self.name, self.build, self.made = group, name, build, None
        self.package, self.provider = package, provider

    def __deepcopy__(self, memo: dict) -> _Deferred:
        return self

    def node(self) -> Any:
        if self.made is None:
            from hydra.core.config_store import ConfigNode
            from omegaconf import OmegaConf

            self.made = ConfigNode(name=self.name, node=OmegaConf.structured(self.build()), group=self.group,
                                   package=self.package, provider=self.provider)
        return self.made


class _LazyGroup(dict):
    """A level of the ConfigStore (the root, ``schema/model``, ``hydra/sweeper``, ...) whose configs are
    made when Hydra opens one: a run uses one option of each group, and making every option's node
    costs start-up time (~30-50 ms of ``OmegaConf.structured`` and signatures), as does Hydra's deep
    copy of every made node at each composition. Hydra lists the names (``keys``) and opens a config
    with ``group[name]``, which makes it."""

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        return value.node() if isinstance(value, _Deferred) else value


def store_lazily(cs: ConfigStore, name: str, build: Callable[[], Any], group: str | None = None,
                 package: str | None = None, provider: str | None = None) -> None:
    """``cs.store(name, build(), group, package, provider)``, with the node made when Hydra first opens it."""
    if not isinstance(cs.repo, _LazyGroup):
        cs.repo = _LazyGroup(cs.repo)
    level = cs.repo
    for part in group.split("/") if group else []:
        child = dict.get(level, part)
        if not isinstance(child, _LazyGroup):  # a group stored before, or a new one
            child = _LazyGroup(child or {})
            dict.__setitem__(level, part, child)
        level = child
    name = name if name.endswith(".yaml") else f"{name}.yaml"
    dict.__setitem__(level, name, _Deferred(group, name, build, package, provider))


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent); each is made when a composition first
    opens it (``store_lazily``)."""
    from .data.augment import AugmentConfig
    from .models import MODEL_REGISTRY
    from .training.config import TrainingConfig

    cs = ConfigStore.instance()
    store_lazily(cs, "run_schema", lambda: run_schema(data_schemas()))
    for name, node in optimizer_schemas().items():
        store_lazily(cs, name, lambda n=node: n, group="schema/optimizer")
    for name, node in scheduler_schemas().items():
        store_lazily(cs, name, lambda n=node: n, group="schema/scheduler")
    for name, cls in MODEL_REGISTRY.items():
        store_lazily(cs, name, lambda c=cls: schema_from_callable(f"{c.__name__}Schema", c, c), group="schema/model")
    for name, node in data_schemas().items():
        store_lazily(cs, name, lambda n=node: n, group="schema/data")
    from .reports import ReportConfig

    # trainer.*: TrainingConfig's fields, less those the optimizer and scheduler groups describe and
    # those the top-level ckpt_path (resume_from) and init_from set
    store_lazily(cs, "default", group="schema/trainer", build=lambda: schema_from_callable(
        "TrainerSchema", TrainingConfig, TrainingConfig, exclude=NOT_TRAINER_KEYS,
        overrides={"seed": (int, II("seed")), "device": (str, "auto"),
                   "save_dir": (Optional[str], "${paths.output_dir}/checkpoints"),
                   "tensorboard_dir": (Optional[str], "${paths.output_dir}/tensorboard"),
                   "amp": (Any, False), "distributed": (Any, "auto")}))
    store_lazily(cs, "default", group="schema/augment",
                 build=lambda: schema_from_callable("AugmentSchema", AugmentConfig, AugmentConfig))
    store_lazily(cs, "default", group="schema/report", build=lambda: schema_from_callable(
        "ReportSchema", ReportConfig, ReportConfig,
        overrides={"baseline_params": (baseline_schema(), baseline_schema())}))


#: ``TrainingConfig`` fields that are not ``trainer.*`` keys: the optimizer and scheduler groups
#: describe some, the top-level ``ckpt_path`` (``resume_from``) and ``init_from`` the others.
NOT_TRAINER_KEYS = (*OPTIMIZER_FIELDS, *SCHEDULER_FIELDS, "resume_from", "init_from")


def baseline_schema() -> type:
    """``report.baseline_params``: the first-break picker's keyword-only parameters, with their
    defaults (``report.baseline_params.k=3`` sets one; a misspelt key fails at compose time)."""
    if not hasattr(baseline_schema, "cache"):
        from .baselines import first_break_polarity

        params = [p for p in inspect.signature(first_break_polarity).parameters.values() if p.kind is p.KEYWORD_ONLY]
        baseline_schema.cache = _schema_class("BaselineParamsSchema", [
            (p.name, _omegaconf_type(type(p.default)), field(default=p.default)) for p in params])
    return baseline_schema.cache


#: Keys of Hydra's instantiate that ``build_from_node`` leaves to Hydra.
_HYDRA_CALL_KEYS = frozenset({"_partial_", "_args_", "_recursive_", "_convert_"})


def build_from_node(node: Any) -> Any:
    """``node``'s ``_target_`` called with its other keys as plain Python values (nested nodes with a
    ``_target_`` built first, like the synthetic set's ``knobs``): what ``hydra.utils.instantiate(node,
    _convert_="all")`` does for the runner's nodes (model, data, augment), without the 10-20 ms a
    call Hydra spends copying and re-typing the node. A node using ``_partial_``, ``_args_``,
    ``_recursive_`` or ``_convert_`` goes through Hydra's instantiate."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    if _uses_keys(values, _HYDRA_CALL_KEYS):
        return instantiate(values, _convert_="all")
    return _build(values)


def _build(value: Any) -> Any:
    from hydra.utils import get_method

    if isinstance(value, list):
        return [_build(item) for item in value]
    if not isinstance(value, dict):
        return value
    built = {key: _build(item) for key, item in value.items() if key != "_target_"}
    return get_method(value["_target_"])(**built) if "_target_" in value else built


def _uses_keys(value: Any, keys: frozenset) -> bool:
    if isinstance(value, dict):
        return bool(keys & set(value)) or any(_uses_keys(v, keys) for v in value.values())
    return isinstance(value, list) and any(_uses_keys(v, keys) for v in value)
