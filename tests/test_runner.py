"""The Hydra side through the compose API (in-process): every option of every conf/ group composes and
instantiates, bad overrides fail at compose time, the lr alias, and one in-process run."""
from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from conftest import ROOT, ramp_traces, write_flat_file, write_scsn_file
from seispolarity import WaveformDataset
from seispolarity.config import register_configs
from seispolarity.data.augment import AugmentConfig
from seispolarity.models import PolarityModel
from seispolarity.training import TrainingConfig

CONF = ROOT / "conf"
pytestmark = pytest.mark.usefixtures("one_thread")

register_configs()


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
ALL_OPTIONS = [(g, o) for g in GROUPS for o in options(g)]
ALL_OPTIONS += [(f"hydra/{sub.name}", o) for sub in sorted((CONF / "hydra").iterdir()) if sub.is_dir()
                for o in sorted(p.stem for p in sub.glob("*.yaml"))]


@pytest.fixture
def paths(tmp_path, cache_dir) -> list[str]:
    return [f"paths.root_dir={ROOT}", f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={cache_dir}",
            f"paths.output_dir={tmp_path / 'out'}"]


def composed(overrides: list[str], hydra: bool = False):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF), job_name="test"):
        return compose("train", overrides=overrides, return_hydra_config=hydra)


@contextlib.contextmanager
def hydra_active(cfg, output_dir: Path):
    """What @hydra.main does before the task: the HydraConfig singleton (for ${hydra:...})."""
    from hydra.core.hydra_config import HydraConfig

    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(Path.cwd())
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    try:
        yield cfg
    finally:
        HydraConfig.instance().cfg = None


# ----------------------------------------------------------------------------------------------
# small files in each data layout
# ----------------------------------------------------------------------------------------------
def _seisbench_rows(preset: str, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        row = {"source_id": f"ev{i // 2}", "station_code": f"S{i}", "trace_snr_db": "10.0"}
        word = ["positive", "negative", "undecidable"][i % 3]
        if preset in ("instance", "seisbench"):
            row.update(trace_P_arrival_sample=500, trace_polarity=word)
        elif preset == "pnw":
            row.update(trace_P_arrival_sample=500, trace_P_polarity=word, event_id=f"uw{i // 2}")
        elif preset == "txed":
            row.update(trace_p_arrival_sample=500, trace_polarity=["U", "D", "N"][i % 3])
        rows.append(row)
    return rows


def write_layout(option: str, folder: Path) -> list[str]:
    """Write a small file of ``data=<option>``'s layout; return the overrides that point at it."""
    n = 12
    if option == "synthetic":
        return ["data.num_traces=64"]
    if option == "scsn":
        return [f"data.path={write_scsn_file(folder / 'scsn.hdf5', n=n)}"]
    if option == "flat":
        path = write_flat_file(folder / "flat.hdf5", ramp_traces(n, 800), np.arange(n) % 3,
                               p_pick=np.full(n, 400), evids=np.arange(n) // 2)
        return [f"data.path={path}"]
    if option in ("instance", "pnw", "txed", "seisbench"):
        from seispolarity.data.layouts import write_seisbench

        order = "ENZ" if option == "pnw" else "ZNE"
        waves = np.random.default_rng(0).standard_normal((n, 3, 1000)).astype(np.float32)
        write_seisbench(folder / option, waves, _seisbench_rows(option, n), component_order=order)
        return [f"data.path={folder / option}"]
    if option == "diting":
        from seispolarity.data.layouts import write_diting

        waves = np.random.default_rng(0).standard_normal((n, 1000, 3)).astype(np.float32)
        rows = [{"part": 0, "key": f"{i // 2:06d}.{i % 2:04d}", "p_pick": 500, "p_motion": "UD "[i % 3],
                 "p_clarity": "IEK"[i % 3], "ev_id": i // 2} for i in range(n)]
        write_diting(folder / "diting", waves, rows)
        return [f"data.path={folder / 'diting'}"]
    pytest.fail(f"conf/data/{option}.yaml is new: teach tests/test_runner.py::write_layout its layout")


# ----------------------------------------------------------------------------------------------
# every option composes and instantiates
# ----------------------------------------------------------------------------------------------
def test_the_groups_users_expect_exist():
    expected = {"data": {"synthetic", "scsn", "flat"}, "model": {"ppnet", "ross"},
                "optimizer": {"adam", "adamw", "sgd"}, "scheduler": {"none", "step", "cosine", "reduce_on_plateau"},
                "trainer": {"default", "cpu", "gpu"}, "debug": {"fast", "overfit"}, "hparams_search": {"optuna"},
                "experiment": {"example"}, "paths": {"default"}, "hydra": {"default"}}
    for group, names in expected.items():
        assert names <= set(options(group)), group


def test_schemas_stay_out_of_the_option_lists():
    from hydra.core.config_store import ConfigStore

    repo = ConfigStore.instance().repo
    assert "schema" in repo
    for group in ("data", "model", "optimizer", "scheduler", "trainer"):
        assert group not in repo, f"schemas stored in the user group {group!r}"


@pytest.mark.parametrize("group,option", ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_every_option_composes_and_instantiates(group, option, tmp_path, paths):
    from seispolarity import runner

    extra = write_layout(option, tmp_path) if group == "data" else []
    if group in ("debug", "experiment", "hparams_search"):
        extra.append("data.num_traces=64")
    cfg = composed([f"{group}={option}", *paths, *extra], hydra=True)
    with hydra_active(cfg, tmp_path / "out"):
        # every interpolation of the job's config resolves, and the run / sweep folders
        resolved = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
                    for k in cfg if k != "hydra"}
        assert "${" not in json.dumps(resolved, default=str)
        assert str(tmp_path / "logs") in cfg.hydra.run.dir and str(tmp_path / "logs") in cfg.hydra.sweep.dir
    model = runner.build_model(cfg)
    assert isinstance(model, PolarityModel)
    tconfig = runner.training_config(cfg)
    assert isinstance(tconfig, TrainingConfig) and tconfig.learning_rate == float(cfg.lr)
    if group == "model":
        x = torch.zeros(2, model.in_channels, model.input_length)
        model.eval()
        assert model(x).shape == (2, model.num_classes) and model.registry_name == option
    if group == "optimizer":
        opt = instantiate(cfg.optimizer, _convert_="all")(model.parameters())
        assert type(opt).__name__.lower() == option and opt.param_groups[0]["lr"] == float(cfg.lr)
    if group == "scheduler":
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        if option == "none":
            assert cfg.scheduler is None
        else:
            sched = instantiate(cfg.scheduler, _convert_="all")(opt)
            assert isinstance(sched, (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau))
    if group == "augment":
        aug = instantiate(cfg.augment) if cfg.augment is not None else None
        assert aug is None if option == "none" else isinstance(aug, AugmentConfig)
    if group == "data":
        aug = instantiate(cfg.augment)
        dataset, _ = runner.build_datasets(cfg, model, aug)
        assert isinstance(dataset, WaveformDataset) and len(dataset) > 0
        batch = dataset.get_batch([0, 1])
        assert batch["waveforms"].shape == (2, model.in_channels, model.input_length + 2 * aug.max_shift)
    if group == "trainer":
        assert tconfig.device == {"cpu": "cpu", "gpu": "cuda"}.get(option, tconfig.device)
    if group == "hparams_search":
        sweeper = cfg.hydra.sweeper
        assert "optuna" in sweeper._target_.lower() and sweeper.direction == "maximize"
        assert sweeper.storage == f"sqlite:///{tmp_path / 'logs'}/optuna/{cfg.task_name}.db"
        assert "interval" in sweeper.params.lr and "choice" in sweeper.params["trainer.batch_size"]
        assert {"lr", "trainer.batch_size", "optimizer.weight_decay", "model.base_channels"} <= set(sweeper.params)
        assert cfg.objective == "val_accuracy" and str(cfg.hydra.mode).endswith("MULTIRUN")


def test_example_experiment(paths):
    cfg = composed(["experiment=example", *paths])
    assert cfg.model._target_.endswith("Ross") and cfg.scheduler._target_.endswith("CosineAnnealingLR")
    assert cfg.scheduler.T_max == cfg.trainer.epochs and cfg.data._target_.endswith("synthetic_dataset")


def test_the_lr_alias_reaches_every_optimizer(paths):
    for option in options("optimizer"):
        cfg = composed([f"optimizer={option}", "lr=0.0123", *paths])
        assert cfg.optimizer.lr == 0.0123
    from seispolarity.runner import training_config

    cfg = composed(["optimizer.lr=5e-2", "lr=1e-4", *paths])
    # an explicit optimizer.lr is the learning rate; lr is only its default (documented in conf/train.yaml)
    assert training_config(cfg).learning_rate == 5e-2 and cfg.optimizer.lr == 5e-2


BAD = [(["lr=abc"], ConfigCompositionException, "lr=abc"),
       (["trainer.epochs=1.5"], ConfigCompositionException, "trainer.epochs=1.5"),
       (["optimizer=rmsprop"], MissingConfigException, "optimizer/rmsprop"),
       (["optimizer.momentum=0.9"], ConfigCompositionException, "optimizer.momentum"),
       (["trainer.no_such_field=1"], ConfigCompositionException, "no_such_field"),
       (["model.base_channels=wide"], ConfigCompositionException, "model.base_channels"),
       (["data.num_traces=many"], ConfigCompositionException, "data.num_traces")]


@pytest.mark.parametrize("overrides,error,text", BAD, ids=[b[0][0] for b in BAD])
def test_bad_overrides_fail_at_compose_time(overrides, error, text, paths):
    with pytest.raises(error) as err:
        composed([*overrides, *paths])
    assert text in str(err.value)


def test_sgd_takes_momentum(paths):
    cfg = composed(["optimizer=sgd", "optimizer.momentum=0.5", *paths])
    assert cfg.optimizer.momentum == 0.5


def test_run_in_process_returns_the_objective_as_a_float(tmp_path, paths, monkeypatch):
    from conftest import tiny_overrides
    from seispolarity.runner import run

    monkeypatch.chdir(tmp_path)  # without @hydra.main the run folder is the current folder
    cfg = composed([*tiny_overrides(), *paths])
    value = run(cfg)
    assert isinstance(value, float) and math.isfinite(value)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["objective"] == {"name": "val_accuracy", "value": value}
    assert metrics["summary"]["val_accuracy"] == value
    assert "${" not in (tmp_path / "config.yaml").read_text()


@pytest.mark.parametrize("model", options("model"))
def test_the_runner_builds_each_node_as_hydras_instantiate_does(model, tmp_path):
    """``config.build_from_node`` (the runner's shortcut past Hydra's instantiate) gives the same model
    (class, arguments, seeded weights), augmentation and data set (nested ``knobs`` built too) as
    ``instantiate(node, _convert_="all")``; a node using Hydra's own keys goes through Hydra."""
    from seispolarity.config import build_from_node

    register_configs()
    cfg = composed([f"model={model}", "data.num_traces=40", f"paths.cache_dir={tmp_path}"])
    built = {}
    for way, build in (("ours", build_from_node), ("hydra", lambda n: instantiate(n, _convert_="all"))):
        torch.manual_seed(0)
        net = build(cfg.model)
        data = OmegaConf.to_container(cfg.data, resolve=True)
        data.update(window_length=int(net.input_length), max_shift=3, unknown="keep")
        del data["test_path"], data["path"]
        built[way] = (net, build(cfg.augment), build(data))
    (net, augment, data), (ref_net, ref_augment, ref_data) = built["ours"], built["hydra"]
    assert type(net) is type(ref_net) and net.input_length == ref_net.input_length
    for (name, value), (_, ref) in zip(net.state_dict().items(), ref_net.state_dict().items()):
        assert torch.equal(value, ref), name
    assert isinstance(augment, AugmentConfig) and augment == ref_augment
    assert len(data) == len(ref_data) == 40
    np.testing.assert_array_equal(data[7][0], ref_data[7][0])
    partial = build_from_node({"_target_": "builtins.dict", "_partial_": True, "a": 1})
    assert partial.func is dict and partial(b=2) == {"a": 1, "b": 2}
