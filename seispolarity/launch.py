"""Command-line adjustments made before Hydra parses ``sys.argv`` (run folder choice)."""
from __future__ import annotations

import os
import re
from pathlib import Path


def _value(argv: list[str], key: str) -> str | None:
    for arg in argv:
        if arg.startswith(key + "="):
            return arg.split("=", 1)[1]
    return None


def _unquote(value: str) -> str:
    """An override value as Hydra reads it (quotes and escapes removed)."""
    if value[:1] in ("'", '"'):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        try:
            return str(OverridesParser.create().parse_overrides([f"x={value}"])[0].value())
        except Exception:  # Hydra reports a bad override itself
            return value
    return value


def hydra_quote(value: str) -> str:
    """``value`` as a single-quoted Hydra override value (backslashes before a quote or at the end
    doubled, quotes escaped: Hydra's rules for quoted strings)."""
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value).replace("'", "\\'")
    return f"'{escaped}'"


_GRAMMAR = set("'\"[]{}(),\\=$")


def _quote_non_ascii(arg: str) -> str:
    """``data.path=/données/été 2024.hdf5`` works unquoted: Hydra's grammar only takes ASCII
    there, so a plain key=value whose value holds other characters (and no grammar) is quoted."""
    key, sep, value = arg.partition("=")
    if not sep or arg.startswith("-") or value.isascii() or _GRAMMAR & set(value):
        return arg
    return f"{key}={hydra_quote(value)}"


def prepare_argv(argv: list[str]) -> list[str]:
    """Resuming ``ckpt_path=<run>/checkpoints/last.ckpt`` (train=true) continues in ``<run>`` (the
    resume command's own Hydra files go to ``<run>/.hydra/resumed_<stamp>/``)."""
    args = argv[:1] + [_quote_non_ascii(a) for a in argv[1:]]
    multirun = "-m" in args or "--multirun" in args
    ckpt = _value(args[1:], "ckpt_path")
    evaluating = _value(args[1:], "train") in ("false", "False")
    if ckpt and not multirun and _value(args[1:], "hydra.run.dir") is None and not evaluating:
        ckpt = _unquote(ckpt)
        run_dir = Path(ckpt).resolve().parent.parent
        if Path(ckpt).resolve().parent.name == "checkpoints" and (run_dir / ".hydra").is_dir():
            extra = [f"hydra.run.dir={hydra_quote(str(run_dir))}"]
            if _value(args[1:], "hydra.output_subdir") is None:
                # .hydra/ keeps the run's own composition; this resume command's goes beside it
                from datetime import datetime

                extra.append(f"hydra.output_subdir=.hydra/resumed_{datetime.now():%Y-%m-%d_%H-%M-%S.%f}")
            args = _add_overrides(args, extra)
    return _add_overrides(args, distributed_overrides(args))


def _add_overrides(args: list[str], extra: list[str]) -> list[str]:
    """Add overrides right after the last one given (argparse rejects overrides split by flags
    such as ``--cfg job``), or at the end when there is none."""
    positions = [i for i, a in enumerate(args[1:], 1) if "=" in a and not a.startswith("-")]
    at = positions[-1] + 1 if positions else len(args)
    return args[:at] + list(extra) + args[at:]


STAMP_ENV = "SEISPOLARITY_RUN_STAMP"  # conf/hydra/default.yaml names run and sweep folders after it
QUIET_RANK = ["hydra.output_subdir=null", "hydra.job_logging.root.handlers=[console]",
              "hydra.job_logging.root.level=WARNING", "++hydra.job_logging.handlers.file.delay=true"]


def distributed_overrides(args: list[str]) -> list[str]:
    """Under torchrun (WORLD_SIZE > 1) every rank runs train.py: make them share one run folder.

    All ranks agree on one time stamp (the first offered to torchrun's store) and export it as
    SEISPOLARITY_RUN_STAMP, which the run and sweep folder names use instead of ``${now:...}``.
    Ranks other than 0 write nothing there: no ``.hydra/``, no ``train.log`` (warnings still go to
    their console). Without torchrun's store (e.g. ranks started by ``srun``), set
    SEISPOLARITY_RUN_STAMP (or ``hydra.run.dir``) to the same value on every rank; inside one SLURM
    job step the job and step ids are used.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return []
    multirun = "-m" in args or "--multirun" in args
    # (hparams_search=optuna is a multirun without -m: its preset sets hydra.mode)
    if any(a.split("=", 1)[0].lstrip("+~") in ("hparams_search", "hydra/sweeper")
           and a.split("=", 1)[1] not in ("null", "basic") for a in args[1:] if "=" in a):
        raise SystemExit("a sweeper that samples (hparams_search=..., hydra/sweeper=...) cannot run under "
                         "torchrun: every rank would sample its own trials. Run the sweep with "
                         "hydra/launcher=submitit_slurm (hydra.launcher.tasks_per_node=N trainer=ddp) instead.")
    if not os.environ.get(STAMP_ENV):
        from datetime import datetime

        from .training.distributed import agree_across_ranks

        mine = datetime.now().strftime("%Y-%m-%d_%H-%M-%S.%f")
        try:
            os.environ[STAMP_ENV] = agree_across_ranks("run_stamp", mine)
        except RuntimeError:
            if os.environ.get("SLURM_JOB_ID"):
                os.environ[STAMP_ENV] = f"slurm-{os.environ['SLURM_JOB_ID']}.{os.environ.get('SLURM_STEP_ID', '0')}"
            elif _value(args[1:], "hydra.run.dir") is None or multirun:
                raise SystemExit(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but the ranks were not started by "
                                 f"torchrun: set {STAMP_ENV} (or hydra.run.dir=...) to the same value on "
                                 f"every rank") from None
    return QUIET_RANK if int(os.environ.get("RANK", "0")) != 0 else []


# -- what train.py installs before Hydra starts ------------------------------------------------
def install_startup_changes() -> None:
    """Install this module's five start-up changes, each idempotent and each checked against Hydra's
    own behaviour in ``tests/test_startup.py``: one composition per single run (``compose_once``),
    YAML through libyaml (``fast_yaml``), each ``${...}`` parsed once (``cache_interpolation_parses``),
    plugin configs made when opened (``lazy_plugin_configs``) and config nodes' metadata copied
    field by field (``fast_metadata_copy``). Names are looked up here at call time, so
    ``benchmarks/startup.py`` can turn one off by rebinding it in this module.
    """
    compose_once()
    fast_yaml()
    cache_interpolation_parses()
    lazy_plugin_configs()
    fast_metadata_copy()


# -- one composition per single run --------------------------------------------------------------
_FIRST: dict = {}  # "pending": (the config loader, Hydra.get_mode's composition), until the next one


def fast_yaml() -> None:
    """Make OmegaConf, and so Hydra, read and write YAML with libyaml where PyYAML has it.

    A composition reads ~30 config files (this project's and Hydra's own) through ``OmegaConf.load``,
    whose loader is PyYAML's pure-Python one: ~30-40 ms of every start here. This loader is
    OmegaConf's own (its float and duplicate-key rules and constructors) on libyaml's parser: the
    same configs, ~8x faster to read. A run then writes four configs through ``OmegaConf.to_yaml``
    (Hydra's ``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml`` and the run's resolved
    ``config.yaml``), ~13 ms each with PyYAML's emitter: OmegaConf's dumper (its quoting of strings
    that read as numbers or booleans) on libyaml's emitter writes them ~3x faster, the same text
    except where a long quoted string is folded (at other spaces: the same value read back).
    ``tests/test_startup.py`` reads and writes every file of ``conf/`` both ways. Without libyaml
    nothing changes. Only ``train.py`` installs it (idempotent).
    """
    import yaml
    from omegaconf import _utils
    from omegaconf import omegaconf as omegaconf_module

    if getattr(_utils.get_yaml_loader, "_seispolarity_fast", False) or not getattr(yaml, "__with_libyaml__", False):
        return
    from yaml.constructor import SafeConstructor
    from yaml.cyaml import CDumper, CParser
    from yaml.resolver import Resolver

    class OmegaConfCLoader(CParser, _utils.get_yaml_loader()):
        def __init__(self, stream) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    class OmegaConfCDumper(CDumper):  # yaml.Dumper's representers, as OmegaConf's dumper has
        pass

    OmegaConfCDumper.add_representer(str, _utils.OmegaConfDumper.str_representer)

    def get_yaml_loader() -> type:
        return OmegaConfCLoader

    def get_omega_conf_dumper() -> type:
        return OmegaConfCDumper

    get_yaml_loader._seispolarity_fast = True
    _utils.get_yaml_loader = get_yaml_loader  # OmegaConf.load looks it up there at every call
    omegaconf_module.get_omega_conf_dumper = get_omega_conf_dumper  # OmegaConf.to_yaml: its own import


def cache_interpolation_parses() -> None:
    """Make OmegaConf parse each distinct interpolation string (``${paths.output_dir}/checkpoints``)
    once per process instead of at every access.

    OmegaConf parses an interpolation with its ANTLR grammar each time it checks or resolves one:
    one start-up of ``train.py`` parses 72 strings, 21 of them distinct, at ~0.5 ms each. A parse
    tree is only read by OmegaConf's visitor (each keeps its own input stream), so handing out the
    same tree again for the same string, rule and lexer mode returns the same values; a string that
    fails to parse is not cached and fails again as before. Only ``train.py`` installs it
    (idempotent); ``tests/test_startup.py`` resolves every config of conf/ both ways.
    """
    import functools

    from omegaconf import _utils, base, grammar_parser
    from omegaconf.resolvers import oc

    if getattr(base.parse, "_seispolarity_cached", False):
        return
    cached = functools.lru_cache(maxsize=1024)(grammar_parser.parse)
    cached._seispolarity_cached = True
    for module in (base, _utils, oc):  # each imported the function by name
        if getattr(module, "parse", None) is grammar_parser.parse:
            module.parse = cached


_IMMUTABLE = (str, int, float, bool, type(None), type, bytes)


def fast_metadata_copy() -> None:
    """Make ``copy.deepcopy`` of an OmegaConf node's metadata copy its fields one by one.

    Hydra deep-copies configs many times per start (every stored schema it opens, every node it
    merges, the whole run config twice in ``run_job``), and each node's ``Metadata`` dataclass goes
    through ``copy``'s generic ``__reduce_ex__`` path: about half of the time of a deep copy of this
    project's composed config (~26 ms a copy here, ~11 ms with this). The copy is the same: a new
    ``Metadata`` of the same class whose immutable fields (types, names, keys, booleans, enums) are
    shared, whose ``flags`` dict (booleans) is a new dict, and whose other fields are deep-copied
    as before. Only ``train.py`` installs it (idempotent); ``tests/test_startup.py`` deep-copies
    composed configs both ways.
    """
    import copy
    import enum

    from omegaconf.base import Metadata

    if "__deepcopy__" in vars(Metadata):
        return

    def __deepcopy__(self, memo: dict):
        made = object.__new__(type(self))
        memo[id(self)] = made
        fields = made.__dict__
        for name, value in self.__dict__.items():
            if isinstance(value, _IMMUTABLE) or isinstance(value, enum.Enum):
                fields[name] = value
            elif name == "flags" and type(value) is dict and all(v is None or type(v) is bool for v in value.values()):
                fields[name] = dict(value)
            else:
                fields[name] = copy.deepcopy(value, memo)
        return made

    Metadata.__deepcopy__ = __deepcopy__


def lazy_plugin_configs() -> None:
    """Make the configs Hydra's plugins store (``hydra/sweeper/optuna``, ``hydra/launcher/submitit_slurm``,
    ...) be made when a composition opens one, as this project's own schemas are (``config.store_lazily``).

    Hydra imports every installed plugin at start-up, and their modules store ~50 structured configs,
    each an ``OmegaConf.structured`` node (~20 ms in all), which Hydra then deep-copies at every
    composition; a single run opens none of them. What is stored, its name, group, package and
    provider are unchanged. Only ``train.py`` installs it (idempotent), before Hydra imports the
    plugins; ``tests/test_startup.py`` composes sweeper and launcher choices with it.
    """
    from hydra.core.config_store import ConfigStore

    from .config import store_lazily

    if getattr(ConfigStore.store, "_seispolarity_lazy", False):
        return

    def store(self, name: str, node, group=None, package=None, provider=None) -> None:
        store_lazily(self, name, lambda: node, group=group, package=package, provider=provider)

    store._seispolarity_lazy = True
    ConfigStore.store = store


def compose_once() -> None:
    """Make ``@hydra.main`` compose the config once for a single run instead of twice.

    Hydra 1.3 composes the whole config first to read ``hydra.mode`` (``Hydra.get_mode``, a
    multirun composition that tolerates sweep overrides) and then again to run it: with this
    project's typed schemas each composition is about 0.1-0.15 s of start-up. This keeps the first
    composition and hands it to the run when that is exactly what the second would return: the same
    overrides (plus the ``hydra.mode=RUN`` Hydra appends), no sweep override (a single run refuses
    one with Hydra's own error, so that case composes again), no group left unchosen (``???``, which
    only a multirun composition skips) and no ``hydra.mode`` of its own other than RUN. Everything
    else (multirun, ``--cfg``, a composition that failed) takes Hydra's own path. Only ``train.py``
    installs it (idempotent); ``tests/test_startup.py`` checks that both paths give the same config.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    if getattr(ConfigLoaderImpl.load_configuration, "_seispolarity_once", False):
        return
    original = ConfigLoaderImpl.load_configuration

    def load_configuration(self, config_name, overrides, run_mode, from_shell=True, validate_sweep_overrides=True):
        from hydra.types import RunMode

        loader, first = _FIRST.pop("pending", (None, None))
        if loader is self and run_mode == RunMode.RUN and validate_sweep_overrides:
            cfg = _reuse(first, config_name, list(overrides), from_shell)
            if cfg is not None:
                return cfg
        cfg = original(self, config_name, overrides, run_mode, from_shell, validate_sweep_overrides)
        if run_mode == RunMode.MULTIRUN and not validate_sweep_overrides:  # Hydra.get_mode's composition
            _FIRST["pending"] = (self, (config_name, list(overrides), from_shell, cfg))
        return cfg

    load_configuration._seispolarity_once = True
    ConfigLoaderImpl.load_configuration = load_configuration


def _reuse(first: tuple, config_name, overrides: list[str], from_shell: bool):
    """The kept composition as the single run's, or None when it might differ from a new one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import open_dict

    name, kept, kept_shell, cfg = first
    added = overrides[len(kept):]
    if name != config_name or overrides[:len(kept)] != kept or kept_shell != from_shell:
        return None
    if added not in ([], ["hydra.mode=RUN"]) or cfg.hydra.mode not in (None, RunMode.RUN):
        return None
    if (cfg.hydra.mode is None) != bool(added):
        return None
    try:
        if any(o.is_sweep_override() for o in OverridesParser.create().parse_overrides(kept)):
            return None
    except Exception:  # Hydra reports a bad override itself
        return None
    if "???" in {str(v) for v in (cfg.hydra.runtime.choices or {}).values()}:
        return None
    if added:  # what composing with the extra override does: the mode, and the override on record
        cfg.hydra.mode = RunMode.RUN
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.hydra.append(added[0])
    return cfg
