"""Packaged weights (`seispolarity/pretrained/`): every packaged file loads with `weights_only=True`, matches
its card's sha256 and reproduces its card's accuracy on the seeded check set; and a tiny run packaged
with `python -m seispolarity.pretrained package ... --out-dir` round-trips through every way of using
packaged weights (`available`, `load`, `Predictor.from_pretrained`, `pretrained:<name>` in predict and
in `train=false ckpt_path=`)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import seispolarity.pretrained as pretrained
from conftest import ROOT, cli_env, explain, run_cli, run_folder, tiny_overrides
from seispolarity.config import register_configs
from seispolarity.data.synthetic import GENERATOR_VERSION
from seispolarity.inference import Predictor
from seispolarity.pretrained.__main__ import verify
from seispolarity.training.checkpoint import CheckpointError, load_checkpoint

PACKAGED = sorted(pretrained.available())
NONE_PACKAGED = pytest.param(None, marks=pytest.mark.skip(
    reason="no weights are packaged in seispolarity/pretrained/ yet; make them with "
           "python -m seispolarity.pretrained package <run>/checkpoints/best.ckpt --name ... --command ..."))


@pytest.mark.parametrize("name", PACKAGED or [NONE_PACKAGED])
def test_packaged_weights_load_match_their_hash_and_reproduce_their_accuracy(name):
    path = pretrained.weights_path(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    card = pretrained.card(name)
    assert card["sha256"] == pretrained.sha256(path) and card["file"] == path.name
    floats = [v for v in state["model_state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == getattr(torch, card["dtype"]) for v in floats)
    assert {"window_length", "normalize", "sampling_rate"} <= set(state["data"]) and state["class_names"]
    assert card["command"].startswith("python train.py") and "generator_version" in card["data_recipe"]
    assert card["check_set"]["max_probability_difference_vs_float32"] <= 1e-3
    assert verify(name) == []  # the check set's accuracy, within 2 traces
    model = pretrained.load(name)
    assert not model.training and model.registry_name == card["model"]["name"]


# -- a tiny run, packaged into tmp_path -------------------------------------------------------------
NAME = "tiny-ppnet"


@pytest.fixture(scope="module")
def packaged(tmp_path_factory, cache_dir):
    """A tiny default-job run (PPNet, 160 synthetic traces, one epoch) and its package in a folder of
    its own: (run folder, package folder, card)."""
    logs = tmp_path_factory.mktemp("logs")
    proc = run_cli([*tiny_overrides(), f"paths.log_dir={logs}", f"paths.cache_dir={cache_dir}"], timeout=600)
    assert proc.returncode == 0, explain(proc)
    run = run_folder(proc.stdout)
    out = tmp_path_factory.mktemp("package")
    cmd = [sys.executable, "-m", "seispolarity.pretrained", "package", str(run / "checkpoints" / "best.ckpt"),
           "--name", NAME, "--command", "python train.py debug=fast model.base_channels=4",
           "--real-metrics", '{"toc2me": {"updown_accuracy": 0.5}}', "--out-dir", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {out / (NAME + '.pt')}" in done.stdout and "check set (synthesise(2000, seed=12345))" in done.stdout
    return run, out, json.loads((out / f"{NAME}.json").read_text())


def test_the_package_command_writes_a_float16_file_and_its_card(packaged):
    run, out, card = packaged
    pt = out / f"{NAME}.pt"
    state = torch.load(pt, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state["model_state_dict"].values() if v.is_floating_point())
    assert "optimizer_state_dict" not in state and "rng" not in state
    assert state["model"]["name"] == "ppnet" and state["model"]["init_kwargs"]["base_channels"] == 4
    assert state["data"]["normalize"] == "peak" and state["data"]["window_length"] == 400
    assert state["class_names"] == ["up", "down", "unknown"]
    assert state["preprocessing"]["sampling_rate"] == 100.0 and state["preprocessing"]["input_length"] == 400
    assert card["sha256"] == pretrained.sha256(pt) and card["bytes"] == pt.stat().st_size
    assert card["command"] == "python train.py debug=fast model.base_channels=4"
    assert card["data_recipe"]["generator_version"] == GENERATOR_VERSION
    assert card["data_recipe"]["training_data"]["num_traces"] == 160
    assert card["real_record_metrics"] == {"toc2me": {"updown_accuracy": 0.5}}
    run_test = json.loads((run / "metrics.json").read_text())["test"]
    assert card["synthetic_test_metrics"]["accuracy"] == run_test["accuracy"]
    check = card["check_set"]
    assert (check["num_traces"], check["seed"], check["p_index"]) == (2000, 12345, "p_pick")
    assert check["scored"] == 2000 and 0.0 <= check["accuracy"] <= 1.0
    assert check["correct"] == round(check["accuracy"] * check["scored"])
    assert check["max_probability_difference_vs_float32"] <= 1e-3
    assert verify(NAME, str(out)) == []


def test_a_changed_byte_fails_the_hash(packaged, tmp_path):
    _, out, card = packaged
    for suffix in (".pt", ".json"):
        (tmp_path / f"{NAME}{suffix}").write_bytes((out / f"{NAME}{suffix}").read_bytes())
    copy = tmp_path / f"{NAME}.json"
    copy.write_text(copy.read_text().replace(card["sha256"], "0" * 64))
    problems = verify(NAME, str(tmp_path))
    assert len(problems) == 1 and "sha256" in problems[0] and "differs from its card's" in problems[0]


@pytest.fixture
def installed(packaged, monkeypatch):
    """The tiny package as if it shipped inside seispolarity/pretrained/."""
    monkeypatch.setattr(pretrained, "PACKAGE_DIR", packaged[1])
    return packaged


def test_every_way_of_using_packaged_weights(installed, tmp_path, synthetic_file):
    run, out, card = installed
    assert pretrained.available() == {NAME: card["description"]}
    assert card["description"].startswith("ppnet (up, down, unknown), 400 samples at 100 Hz")
    model = pretrained.load(NAME)
    assert type(model).__name__ == "PPNet" and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    packed = Predictor.from_pretrained(NAME, device="cpu")
    assert Predictor(f"pretrained:{NAME}", device="cpu").model.registry_name == "ppnet"
    original = Predictor(run / "checkpoints" / "best.ckpt", device="cpu")
    x = np.random.default_rng(0).normal(size=(8, 600)).cumsum(axis=1).astype(np.float32)
    np.testing.assert_allclose(packed.predict(x).probabilities, original.predict(x).probabilities, rtol=0, atol=1e-3)
    from seispolarity.predict import main as predict_main

    picks = tmp_path / "picks.csv"
    assert predict_main([f"ckpt=pretrained:{NAME}", f"data={synthetic_file}", "name=synthetic", f"out={picks}",
                         "device=cpu"]) == 0
    with open(picks) as fh:
        assert len(list(csv.DictReader(fh))) == 1200
    with pytest.raises(CheckpointError, match=rf"pretrained:nope: no packaged weights of that name; packaged: {NAME}"):
        Predictor("pretrained:nope")


def test_train_false_scores_packaged_weights(installed, tmp_path, cache_dir, monkeypatch):
    from seispolarity.runner import run

    register_configs()
    folder = tmp_path / "eval"
    folder.mkdir()
    monkeypatch.chdir(folder)
    overrides = [*tiny_overrides(), "model.base_channels=16", "train=false", f"ckpt_path=pretrained:{NAME}",
                 f"paths.root_dir={ROOT}", f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={cache_dir}",
                 f"paths.output_dir={folder}", "trainer.tensorboard_dir=null"]
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf"), job_name="test_pretrained"):
        cfg = compose("train", overrides=overrides)
    run(cfg)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0 and metrics["test"]["num_samples"] > 0
    # the model is the packaged one (base_channels 4), whatever model.base_channels says
    assert metrics["summary"]["parameters"] == pretrained.load(NAME).num_parameters()
    assert load_checkpoint(f"pretrained:{NAME}")["model"]["init_kwargs"]["base_channels"] == 4
