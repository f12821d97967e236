"""Start-up (issue 16 item 3): a single ``python train.py`` run composes its config once, and that one
composition is the config Hydra's own two compositions would have given; ``benchmarks/startup.py``
measures it."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import ROOT, cli_env, explain

#: In a fresh interpreter: each command as @hydra.main handles it (Hydra.get_mode's composition, then
#: the run's), first with Hydra's own code, then with seispolarity.launch.compose_once installed.
SCRIPT = textwrap.dedent("""
    import json, sys
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf
    from seispolarity import launch
    from seispolarity.config import register_configs

    register_configs()
    CASES = json.loads(sys.argv[1])

    def command(overrides):
        GlobalHydra.instance().clear()
        hydra = Hydra.create_main_hydra2(task_name="train", config_search_path=create_config_search_path(sys.argv[2]))
        overrides = list(overrides)
        mode = hydra.get_mode("train", overrides)
        if mode is None:
            overrides.append("hydra.mode=RUN")
        elif mode != RunMode.RUN:
            return {"config": "multirun", "reused": False}
        pending = launch._FIRST.get("pending")
        try:
            cfg = hydra.compose_config("train", overrides, run_mode=RunMode.RUN)
        except Exception as exc:
            return {"config": type(exc).__name__, "reused": False}
        return {"config": json.dumps(OmegaConf.to_container(cfg), sort_keys=True, default=str),
                "reused": pending is not None and cfg is pending[1][3]}

    before = [command(c) for c in CASES]
    launch.compose_once()
    launch.compose_once()  # idempotent
    after = [command(c) for c in CASES]
    print(json.dumps({"same": [a["config"] == b["config"] for a, b in zip(before, after)],
                      "reused": [b["reused"] for b in after], "before_reused": [a["reused"] for a in before]}))
""")

CASES = [[], ["optimizer=sgd", "lr=1e-3"], ["experiment=example", "debug=fast", "trainer.epochs=3"],
         ["hydra.job.name=x", "scheduler=step"], ["hparams_search=optuna"], ["lr=1e-3,1e-4"], ["lr=abc"]]
REUSED = [True, True, True, True, False, False, False]  # a multirun, a sweep override, an error: Hydra's path


def test_one_composition_is_the_config_two_would_give():
    p = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(CASES), str(ROOT / "conf")], cwd=ROOT,
                       env=cli_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, explain(p)
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["same"] == [True] * len(CASES), result
    assert result["reused"] == REUSED and not any(result["before_reused"]), result


def test_the_startup_benchmark_counts_one_composition(tmp_path):
    out = tmp_path / "startup.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "startup.py"), "--repeats", "1", "--num-traces",
                        "200", "--cache-dir", str(tmp_path / "cache"), "--json", str(out)],
                       cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, explain(p)
    assert "train.py (one composition)" in p.stdout and "baseline (import torch" in p.stdout, p.stdout
    summary = json.loads(out.read_text())["summary"]
    assert summary["once"]["compose_calls"] == 1 and summary["twice"]["compose_calls"] == 2, summary
    assert 0 < summary["once"]["startup_s"] < 60 and summary["baseline_s"] > 0, summary
    assert "Hydra alone" in p.stdout and 0 < summary["floor_s"] < summary["once"]["startup_s"], summary


def test_fast_yaml_reads_and_writes_every_config_file_as_omegaconf_does():
    """``launch.fast_yaml`` (OmegaConf's loader and dumper on libyaml): every file of conf/ loads to the
    same config and writes to the same text, a long quoted string folded elsewhere reads back the
    same, and OmegaConf's own rules hold (duplicate keys refused, 1e-3 a float, dates strings,
    strings that read as numbers or booleans quoted)."""
    import pytest
    import yaml
    from omegaconf import OmegaConf, _utils
    from omegaconf import omegaconf as omegaconf_module

    from seispolarity import launch

    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML without libyaml: fast_yaml changes nothing")
    files = sorted((ROOT / "conf").rglob("*.yaml"))
    originals = _utils.get_yaml_loader, omegaconf_module.get_omega_conf_dumper
    pure = {f: OmegaConf.to_container(OmegaConf.load(f)) for f in files}
    strings = {"s": ["1", "1e-3", "true", "off", "null", "~", "2020-01-01", "é", "a: b", "-x", "", "  "],
               "long": "word " * 60 + "\n two lines"}
    written = {f: OmegaConf.to_yaml(OmegaConf.create(v)) for f, v in [*pure.items(), ("strings", strings)]}
    try:
        launch.fast_yaml()
        assert _utils.get_yaml_loader is not originals[0] and "CParser" in str(_utils.get_yaml_loader().__mro__)
        assert "CEmitter" in str(omegaconf_module.get_omega_conf_dumper().__mro__)
        assert all(OmegaConf.to_container(OmegaConf.load(f)) == pure[f] for f in files) and len(files) > 40
        folded = []
        for f, text in written.items():
            again = OmegaConf.to_yaml(OmegaConf.create(pure.get(f, strings)))
            if again != text:  # only where PyYAML folded a long quoted string: the same value read back
                assert "\\\n" in text and yaml.safe_load(again) == yaml.safe_load(text), f
                folded.append(f)
            assert OmegaConf.to_container(OmegaConf.create(again)) == pure.get(f, strings), f
        assert folded == [ROOT / "conf" / "hydra" / "default.yaml", "strings"], folded
        loaded = OmegaConf.to_container(OmegaConf.create(yaml.load("a: 1e-3\nb: 2020-01-01\nc: '1'\n",
                                                                   Loader=_utils.get_yaml_loader())))
        assert loaded == {"a": 0.001, "b": "2020-01-01", "c": "1"}
        with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key a"):
            yaml.load("a: 1\na: 2\n", Loader=_utils.get_yaml_loader())
    finally:
        _utils.get_yaml_loader, omegaconf_module.get_omega_conf_dumper = originals


#: In a fresh interpreter, with none or all of train.py's start-up changes installed (``sys.argv[2]``
#: "plain" or "launch") before Hydra imports its plugins: every config the ConfigStore holds (this
#: project's schemas and the plugins' sweepers and launchers), and commands composed and resolved.
STORE_SCRIPT = textwrap.dedent("""
    import json, sys
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.plugins import Plugins
    from hydra.types import RunMode
    from omegaconf import OmegaConf
    from seispolarity import launch
    from seispolarity.config import register_configs

    CASES, CONF, MODE = json.loads(sys.argv[1]), sys.argv[3], sys.argv[2]
    if MODE == "launch":
        launch.install_startup_changes()  # what train.py installs
        launch.install_startup_changes()  # idempotent
    register_configs()
    Plugins.instance()  # Hydra imports the plugins, which store their configs
    cs = ConfigStore.instance()

    def walk(path):
        for name in cs.list(path):
            full = f"{path}/{name}" if path else name
            if name.endswith(".yaml"):
                node = cs.load(full)
                yield full, [node.name, node.group, node.package, node.provider,
                             as_text(node.node), str(OmegaConf.get_type(node.node))]
            else:
                yield from walk(full)

    def as_text(cfg, resolve=False):
        return json.dumps(OmegaConf.to_container(cfg, resolve=resolve), default=str)

    store = dict(walk(""))

    def command(overrides):
        GlobalHydra.instance().clear()
        hydra = Hydra.create_main_hydra2(task_name="train", config_search_path=create_config_search_path(CONF))
        mode = RunMode.MULTIRUN if "-m" in overrides else RunMode.RUN
        overrides = [o for o in overrides if o != "-m"]
        try:
            cfg = hydra.compose_config("train", overrides, run_mode=mode)
            HydraConfig.instance().set_config(cfg)
            job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            return [as_text(cfg), as_text(job, resolve=True), OmegaConf.select(cfg, "hydra.sweep.dir"),
                    OmegaConf.select(cfg, "hydra.job_logging.handlers.file.filename")]
        except Exception as exc:
            return f"{type(exc).__name__} ({type(exc.__cause__).__name__}): {str(exc).splitlines()[0]}"

    print(json.dumps({"store": store, "commands": [command(c) for c in CASES],
                      "lazy": type(cs.repo).__name__}))
""")

STORE_CASES = [[], ["optimizer=sgd", "lr=1e-3", "scheduler=step"], ["-m", "hparams_search=optuna"],
               ["-m", "hydra/launcher=joblib", "model=ross,ppnet"], ["-m", "hydra/launcher=submitit_slurm"],
               ["experiment=example", "debug=fast"], ["data.path=${oc.env:NOT_SET_ANYWHERE}"],
               ["trainer.save_dir=${paths.output_dir}/ckpt", "tags=[a,b]"], ["task_name='${oops'"], ["lr=abc"]]


def test_lazy_configs_and_cached_parses_change_no_config():
    """``launch.lazy_plugin_configs`` and this project's lazy schemas (``config.store_lazily``) hold the
    same configs as eager ``ConfigStore.store`` (each node, name, group, package and provider), and
    with ``launch.cache_interpolation_parses`` too, commands compose and resolve to the same config, or
    fail with the same error (an interpolation that does not parse is not cached)."""
    runs = {}
    for mode in ("plain", "launch"):
        p = subprocess.run([sys.executable, "-c", STORE_SCRIPT, json.dumps(STORE_CASES), mode, str(ROOT / "conf")],
                           cwd=ROOT, env=cli_env(SEISPOLARITY_RUN_STAMP="same-stamp"), capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, explain(p)
        runs[mode] = json.loads(p.stdout.strip().splitlines()[-1])
    plain, launched = runs["plain"], runs["launch"]
    assert launched["lazy"] == "_LazyGroup"
    assert {"hydra/sweeper/optuna.yaml", "hydra/launcher/joblib.yaml", "hydra/launcher/submitit_slurm.yaml",
            "schema/data/synthetic.yaml", "schema/trainer/default.yaml", "run_schema.yaml"} <= set(plain["store"])
    assert launched["store"] == plain["store"]
    assert launched["commands"] == plain["commands"]
    errors = [c for c in plain["commands"] if isinstance(c, str)]
    assert len(errors) == 3 and "NOT_SET_ANYWHERE" in errors[0] and "GrammarParseError" in errors[1], errors
    assert all(isinstance(c, list) for c in plain["commands"][:6]), plain["commands"]


#: In a fresh interpreter: composed configs deep-copied with OmegaConf's own metadata copy, then with
#: ``launch.fast_metadata_copy``: every node's metadata fields, the resolved values, and what a copy
#: refuses (a typed field, a read-only flag set on the copy only).
COPY_SCRIPT = textwrap.dedent("""
    import copy, json, sys
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, DictConfig, ListConfig, ValidationError
    from omegaconf.base import Metadata
    from seispolarity import launch
    from seispolarity.config import register_configs

    register_configs()
    CASES, CONF = json.loads(sys.argv[1]), sys.argv[2]

    def nodes(cfg, path=""):
        yield path, cfg._metadata
        if isinstance(cfg, (DictConfig, ListConfig)) and not cfg._is_none() and not cfg._is_missing():
            keys = cfg.keys() if isinstance(cfg, DictConfig) else range(len(cfg))
            for k in keys:
                yield from nodes(cfg._get_node(k), f"{path}.{k}")

    def describe(meta):  # (resolver_cache holds ${now:} of the moment: deep-copied as before)
        return {k: repr(v) for k, v in sorted(vars(meta).items()) if k != "resolver_cache"}

    def check(cfg):
        dup = copy.deepcopy(cfg)
        pairs = list(zip(nodes(cfg), nodes(dup)))
        assert all(a[1] is not b[1] for a, b in pairs), "metadata shared"
        assert all(a[1].flags is not b[1].flags for a, b in pairs), "flags shared"
        meta = [[a[0], describe(a[1]), describe(b[1])] for a, b in pairs]
        OmegaConf.set_readonly(dup.trainer, True)
        refused = []
        try:
            dup.trainer.epochs = "many"
        except Exception as exc:
            refused.append(type(exc).__name__)
        cfg.trainer.epochs = 7  # the original stays writable
        try:
            OmegaConf.set_readonly(dup.trainer, False)
            dup.trainer.epochs = "many"
        except ValidationError as exc:
            refused.append(type(exc).__name__)
        return {"meta": meta,
                "values": json.dumps(OmegaConf.to_container(dup.model, resolve=True), sort_keys=True, default=str),
                "refused": refused}

    def run():
        out = []
        for overrides in CASES:
            with initialize_config_dir(config_dir=CONF, version_base="1.3"):
                out.append(check(compose("train", overrides=overrides)))
        return out

    plain = run()
    launch.fast_metadata_copy()
    launch.fast_metadata_copy()  # idempotent
    assert "__deepcopy__" in vars(Metadata)
    print(json.dumps({"plain": plain, "fast": run()}))
""")


def test_fast_metadata_copy_copies_every_node_as_omegaconf_does():
    cases = [[], ["model=ross", "optimizer=sgd", "scheduler=step"], ["data=scsn", "data.path=x.hdf5"]]
    p = subprocess.run([sys.executable, "-c", COPY_SCRIPT, json.dumps(cases), str(ROOT / "conf")], cwd=ROOT,
                       env=cli_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, explain(p)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for plain, fast in zip(out["plain"], out["fast"]):
        assert len(fast["meta"]) > 100
        assert all(a == b for _, a, b in fast["meta"])  # the copy's metadata equals the original's
        assert [m[1] for m in fast["meta"]] == [m[1] for m in plain["meta"]]
        assert fast["values"] == plain["values"]
        assert fast["refused"] == plain["refused"] == ["ReadonlyConfigError", "ValidationError"]
