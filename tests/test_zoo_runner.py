"""The model zoo through the real runner (issue 5).

For every registered model: a 1-epoch ``debug=fast`` run of ``seispolarity.runner.run`` on a config
composed from conf/ (Hydra's compose API, in-process, a temporary run folder) that writes
metrics.json. Auxiliary heads: PPNet's P-pick mask learns from the synthetic data's ``p_pick`` and is
left alone (no error) on an SCSN-layout file, which has no per-trace pick; DiTingMotion's clarity head
learns from the synthetic ``Z`` and is left alone without it. Two-class models: the log and
metrics.json say how many unknown traces were dropped, per file. One real
``python train.py -m model=polarcap debug=fast`` (a two-class model, conf/paths' defaults) checks the
same through the CLI: train.log, metrics.json, report.md and the sweep's summary.md.

Nothing is mocked: real HDF5 files, real configs, real training. Sizes are tiny (``N`` traces) so the
whole file takes well under a minute on two shared CPU cores.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import ROOT, cli_env, explain, run_cli, run_folder
from seispolarity.config import register_configs
from seispolarity.models import MODEL_REGISTRY, list_models
from seispolarity.training import seed_everything
from seispolarity.training.checkpoint import load_checkpoint

CONF = ROOT / "conf"
N = 160  # synthetic traces per run (debug=fast alone would take 600)
MODELS = list_models()
TWO_CLASS = [m for m in MODELS if MODEL_REGISTRY[m]().num_classes == 2]
#: the parameters that only an auxiliary loss can move
AUX_HEADS = {"ppnet": ("decoder.", "mask_out."), "diting_motion": ("clarity_sides.", "clarity_fuse.")}

register_configs()  # (one intra-op thread per test comes from conftest's autouse fixture)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def compose_run(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF), job_name="test_zoo"):
        return compose("train", overrides=overrides)


def paths(run_dir: Path, cache_dir: Path) -> list[str]:
    """``run_dir`` is the run folder (checkpoints/ goes there); logs/ beside it."""
    return [f"paths.root_dir={ROOT}", f"paths.log_dir={run_dir.parent / 'logs'}", f"paths.cache_dir={cache_dir}",
            f"paths.output_dir={run_dir}"]


def synthetic_overrides(model: str, run_dir: Path, cache_dir: Path) -> list[str]:
    return ["debug=fast", f"model={model}", f"data.num_traces={N}", f"data.max_traces={N}", "report=none",
            "trainer.tensorboard_dir=null", *paths(run_dir, cache_dir)]


def run_in(folder: Path, overrides: list[str], monkeypatch) -> tuple[float, dict, object]:
    """Compose, run the real runner with ``folder`` as the run folder; return (objective, metrics, cfg)."""
    from seispolarity.runner import run

    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(folder)  # without @hydra.main the run folder is the current folder
    cfg = compose_run(overrides)
    value = run(cfg)
    return value, json.loads((folder / "metrics.json").read_text()), cfg


def initial_and_trained(cfg, folder: Path) -> tuple[dict, dict]:
    """The parameters the run started from (same seed, same config) and those it ended with."""
    from seispolarity.runner import build_model

    seed_everything(int(cfg.seed))
    start = dict(build_model(cfg).named_parameters())
    end = load_checkpoint(folder / "checkpoints" / "last.ckpt")["model_state_dict"]
    return start, end


def changed(start: dict, end: dict, prefixes: tuple[str, ...]) -> dict[str, bool]:
    names = [n for n in start if n.startswith(prefixes)]
    assert names, f"no parameters under {prefixes}"
    return {n: not torch.equal(start[n].detach(), end[n]) for n in names}


def synthetic_labels(cache_dir: Path) -> np.ndarray:
    """Labels of the cached synthetic file the runs train on (N traces, seed 0, default knobs)."""
    from omegaconf import OmegaConf

    from seispolarity.data.presets import synthetic_path

    knobs = OmegaConf.to_container(compose_run(["debug=fast"]).data.knobs, resolve=True)
    knobs.pop("_target_", None)  # instantiate makes the node a plain dict of the knobs
    with h5py.File(synthetic_path(cache_dir, N, 0, knobs), "r") as f:
        return f["Y"][()]


@pytest.fixture(scope="module")
def scsn_files(tmp_path_factory) -> tuple[Path, Path, dict]:
    """SCSN-layout train / test files (X (n, 600), P at 300, Y; no p_pick, no clarity) cut from
    synthetic traces, so the networks see real first motions."""
    from seispolarity.data.layouts import write_scsn
    from seispolarity.data.synthetic import generate_synthetic

    folder = tmp_path_factory.mktemp("scsn")
    source = generate_synthetic(folder / "source.hdf5", num_traces=240, seed=3)
    with h5py.File(source, "r") as f:
        X, Y, pick, evids = f["X"][()], f["Y"][()], f["p_pick"][()], f["evids"][()]
    X = np.stack([x[p - 300:p + 300] for x, p in zip(X, pick)])
    train = write_scsn(folder / "scsn_p_2000_2017_6sec_0.5r_fm_train.hdf5", X[:180], Y[:180], evids=evids[:180])
    test = write_scsn(folder / "scsn_p_2000_2017_6sec_0.5r_fm_test.hdf5", X[180:], Y[180:], evids=evids[180:])
    with h5py.File(train, "r") as f:
        assert "p_pick" not in f and "Z" not in f
    return train, test, {"train_unknown": int((Y[:180] == 2).sum()), "test_unknown": int((Y[180:] == 2).sum())}


# ----------------------------------------------------------------------------------------------
# every model, one epoch of the real runner
# ----------------------------------------------------------------------------------------------
def test_every_registered_model_has_a_conf_option():
    assert set(MODELS) == {p.stem for p in (CONF / "model").glob("*.yaml")}
    assert {"ross", "ppnet", "eqpolarity", "diting_motion", "cfm", "rpnet", "polarcap"} <= set(MODELS)
    assert set(TWO_CLASS) == {"eqpolarity", "cfm", "rpnet", "polarcap"}


def test_every_model_has_a_recipe_and_compare_models_sweeps_them_all():
    assert set(MODELS) == {p.stem for p in (CONF / "recipe").glob("*.yaml")}
    for model in MODELS:
        cfg = compose_run([f"recipe={model}"])
        assert cfg.model == compose_run([f"model={model}"]).model, model
        assert 0 < cfg.lr <= 1e-3 and cfg.trainer.epochs >= 1 and cfg.trainer.batch_size >= 1
    # a recipe sets what it learns at; the command line still wins over it
    cfg = compose_run(["recipe=diting_motion", "trainer.epochs=1", "lr=5e-4"])
    assert (cfg.trainer.epochs, cfg.lr, cfg.trainer.batch_size) == (1, 5e-4, 128)
    assert compose_run(["recipe=eqpolarity"]).lr == 3e-4
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF), job_name="test_zoo"):
        sweep = compose("train", overrides=["experiment=compare_models"], return_hydra_config=True).hydra.sweeper
    assert set(str(sweep.params.recipe).split(",")) == set(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_one_epoch_run_writes_metrics(model, tmp_path, cache_dir, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    value, metrics, cfg = run_in(tmp_path / "run", synthetic_overrides(model, tmp_path / "run", cache_dir),
                                  monkeypatch)
    assert isinstance(value, float) and math.isfinite(value)
    summary, data = metrics["summary"], metrics["data"]
    assert metrics["objective"]["value"] == value and summary["epochs"] == 1
    assert summary["parameters"] == MODEL_REGISTRY[model]().num_parameters()
    for key in ("train_loss", "val_loss", "test_loss", "test_accuracy", "test_updown_accuracy"):
        assert math.isfinite(summary[key]), key
    assert metrics["history"][0]["epoch"] == 1

    labels = synthetic_labels(cache_dir)
    n_unknown = int((labels == 2).sum())
    assert 0 < n_unknown < N
    splits = data["splits"]
    total = sum(s["traces"] for s in splits.values())
    unknown_in_splits = sum(s["classes"]["unknown"] for s in splits.values())
    assert metrics["test"]["num_samples"] == splits["test"]["traces"]
    assert metrics["test"]["excluded_unknown"] == 0 == summary["test_excluded_unknown"]
    if model in TWO_CLASS:
        # unknown traces are dropped before the split, counted in metrics.json and in the log
        assert data["unknown"] == "drop"
        assert data["dropped"]["train_file"] == {"unknown_label": n_unknown}
        assert total == N - n_unknown and unknown_in_splits == 0
        assert f"dropped {n_unknown} traces (unknown_label)" in caplog.text
        assert "two-class model: data.unknown=auto drops the traces labelled unknown" in caplog.text
        assert len(metrics["test"]["confusion_matrix"]) == 2
    else:
        assert data["unknown"] == "keep" and "unknown_label" not in data["dropped"]["train_file"]
        assert total == N and unknown_in_splits == n_unknown
        assert len(metrics["test"]["confusion_matrix"]) == 3

    if model in AUX_HEADS:
        # the synthetic file has p_pick and Z: the mask / clarity head learnt from them
        start, end = initial_and_trained(cfg, tmp_path / "run")
        moved = changed(start, end, AUX_HEADS[model])
        assert all(moved.values()), [n for n, m in moved.items() if not m]


# ----------------------------------------------------------------------------------------------
# auxiliary heads without their targets; unknown traces of a test file
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", sorted(AUX_HEADS))
def test_aux_head_is_left_alone_without_its_targets(model, scsn_files, tmp_path, cache_dir, monkeypatch):
    train, _, _ = scsn_files
    overrides = ["debug=fast", f"model={model}", "data=scsn", f"data.path={train}", "report=none",
                 "trainer.tensorboard_dir=null", *paths(tmp_path / "run", cache_dir)]
    value, metrics, cfg = run_in(tmp_path / "run", overrides, monkeypatch)
    assert math.isfinite(value) and metrics["summary"]["epochs"] == 1
    assert metrics["data"]["unknown"] == "keep" and metrics["data"]["splits"]["train"]["traces"] > 0
    start, end = initial_and_trained(cfg, tmp_path / "run")
    aux = changed(start, end, AUX_HEADS[model])
    assert not any(aux.values()), [n for n, m in aux.items() if m]  # no target, no gradient, no update
    rest = changed(start, end, tuple(n for n in start if not n.startswith(AUX_HEADS[model])))
    assert sum(rest.values()) >= 0.9 * len(rest)  # the polarity network did train


def test_two_class_model_reports_unknown_dropped_from_each_file(scsn_files, tmp_path, cache_dir, monkeypatch,
                                                                 caplog):
    caplog.set_level(logging.INFO)
    train, test, counts = scsn_files
    overrides = ["debug=fast", "model=cfm", "data=scsn", f"data.path={train}", f"data.test_path={test}",
                 "report=none", "trainer.tensorboard_dir=null", *paths(tmp_path / "run", cache_dir)]
    _, metrics, _ = run_in(tmp_path / "run", overrides, monkeypatch)
    dropped = metrics["data"]["dropped"]
    assert dropped["train_file"] == {"unknown_label": counts["train_unknown"]}
    assert dropped["test_file"] == {"unknown_label": counts["test_unknown"]}
    assert metrics["test"]["num_samples"] == 60 - counts["test_unknown"]
    assert metrics["test"]["excluded_unknown"] == 0
    assert f"{test}: dropped {counts['test_unknown']} traces (unknown_label)" in caplog.text


def test_two_class_model_with_unknown_kept_is_a_clear_error(tmp_path, cache_dir, monkeypatch):
    overrides = synthetic_overrides("cfm", tmp_path / "run", cache_dir) + ["data.unknown=keep"]
    with pytest.raises(ValueError, match=r"model has 2 classes; for a two-class model drop unknown traces"):
        run_in(tmp_path / "run", overrides, monkeypatch)
    assert not (tmp_path / "run" / "metrics.json").exists()


# ----------------------------------------------------------------------------------------------
# the CLI, once
# ----------------------------------------------------------------------------------------------
def test_cli_two_class_model_debug_fast(tmp_path):
    """``python train.py -m model=polarcap debug=fast`` with conf/paths' defaults (root = the folder
    in SEISPOLARITY_ROOT, which train.py fills in when unset): the multirun resolves its sweep folder
    (it once failed before any job: ``HydraConfig was not set``), the job writes metrics.json,
    train.log and report.md saying how many unknown traces were dropped, and summary.md lists it."""
    proc = run_cli(["-m", "model=polarcap", "debug=fast", f"data.max_traces={N}"],
                   env=cli_env(SEISPOLARITY_ROOT=str(tmp_path)), timeout=180)
    assert proc.returncode == 0, explain(proc)
    folder = run_folder(proc.stdout)
    assert folder.name == "0" and folder.parent.parent == tmp_path / "outputs" / "debug" / "multiruns"
    metrics = json.loads((folder / "metrics.json").read_text())
    n_unknown = int((synthetic_labels(tmp_path / "data" / "cache") == 2).sum())
    assert 0 < n_unknown < N
    assert metrics["summary"]["epochs"] == 1 and metrics["summary"]["parameters"] == 16883
    assert metrics["data"]["unknown"] == "drop"
    assert metrics["data"]["dropped"]["train_file"] == {"unknown_label": n_unknown}
    assert metrics["test"]["excluded_unknown"] == 0
    log_text = (folder / "train.log").read_text()
    assert f"dropped {n_unknown} traces (unknown_label)" in log_text
    assert "two-class model: data.unknown=auto drops" in log_text
    report = (folder / "report.md").read_text()
    assert "- model: polarcap" in report
    assert ("traces labelled unknown dropped from the data file before splitting (data.unknown=drop): "
            f"{n_unknown}") in report
    summary = (folder.parent / "summary.md").read_text()
    assert "| 1 | 0 | model=polarcap debug=fast" in summary and "| ok |" in summary
