"""Fine-tuning: `init_from` (TrainingConfig field / top-level runner key) starts a new run at epoch 0
from a checkpoint's weights with a fresh optimizer, distinct from resuming; `freeze=features` trains
the classification head only and leaves every feature weight (and BatchNorm statistic) bit-identical."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from conftest import ROOT, explain, run_cli, run_folder, tiny_overrides
from seispolarity.data.dataset import WaveformDataset
from seispolarity.models import PPNet, get_model
from seispolarity.training import Trainer, TrainingConfig, seed_everything
from seispolarity.training.checkpoint import load_checkpoint

KW = dict(base_channels=4, lstm_units=16, num_dense=16)


def _config(**kw) -> TrainingConfig:
    values = dict(epochs=1, batch_size=32, num_workers=0, device="cpu", validation_split=0.2, show_progress=False,
                  seed=3, log_every=1000)
    values.update(kw)
    return TrainingConfig(**values)


@pytest.fixture(scope="module")
def source(tmp_path_factory, synthetic_file):
    """A tiny PPNet trained for one epoch (300 traces): (data set, its best checkpoint)."""
    folder = tmp_path_factory.mktemp("source")
    dataset = WaveformDataset(synthetic_file, name="flat", preload=True, window_length=400, max_shift=5,
                              max_traces=300)
    seed_everything(0)
    Trainer(PPNet(**KW), dataset, _config(save_dir=str(folder / "checkpoints"))).train()
    return dataset, folder / "checkpoints" / "best.ckpt"


def _source_model(ckpt) -> PPNet:
    model = PPNet(**KW)
    model.load_state_dict(load_checkpoint(ckpt)["model_state_dict"])
    return model


def test_init_from_starts_a_new_run_at_epoch_0_from_those_weights(source, tmp_path):
    dataset, ckpt = source
    seed_everything(123)  # other initial weights than the source's
    trainer = Trainer(PPNet(**KW), dataset, _config(save_dir=str(tmp_path / "new"), init_from=str(ckpt)))
    assert trainer.epoch == 0 and trainer.global_step == 0 and trainer.history == []
    assert trainer.optimizer.state_dict()["state"] == {}  # a fresh optimizer
    batch = dataset.get_batch(torch.arange(16))
    x, _, _ = trainer.prepare_inputs(batch, train=False)
    trainer.model.eval()
    reference = _source_model(ckpt).eval()
    with torch.no_grad():
        assert torch.equal(trainer.model(x), reference(x))  # the first forward is the source model's
    result = trainer.train()
    assert result["epochs_trained"] == 1 and [h["epoch"] for h in result["history"]] == [1]
    state = load_checkpoint(tmp_path / "new" / "last.ckpt")
    assert state["epoch"] == 1 and state["training_config"]["init_from"] == str(ckpt)
    assert load_checkpoint(ckpt)["epoch"] == 1  # the source is untouched


def test_freeze_features_trains_the_head_only(source, tmp_path):
    dataset, ckpt = source
    model = PPNet(**KW)
    trainer = Trainer(model, dataset, _config(save_dir=str(tmp_path / "frozen"), init_from=str(ckpt),
                                              freeze="features", learning_rate=1e-2))
    head = set(model.head_parameter_names())
    assert head == {n for n, _ in model.named_parameters() if n.startswith("classifier.")}
    trainable = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert trainable == {id(p) for n, p in model.named_parameters() if n in head}
    trainer.train()
    before = load_checkpoint(ckpt)["model_state_dict"]
    after = load_checkpoint(tmp_path / "frozen" / "last.ckpt")["model_state_dict"]
    features = [k for k in before if not k.startswith("classifier.")]
    assert any("running_mean" in k for k in features)  # BatchNorm statistics are part of the features
    for key in features:
        assert torch.equal(before[key], after[key]), key
    assert any(not torch.equal(before[k], after[k]) for k in head)


def test_freeze_needs_a_known_value_and_a_head():
    with pytest.raises(ValueError, match=r"TrainingConfig.freeze='all': expected one of \('none', 'features'\)"):
        TrainingConfig(freeze="all")
    for name in ("ross", "ppnet", "eqpolarity", "diting_motion", "cfm", "rpnet", "polarcap"):
        model = get_model(name)
        names = model.head_parameter_names()
        assert names and len(names) < len(list(model.parameters())), name


def test_init_from_in_the_runner_is_a_new_run_with_the_checkpoints_model(tmp_path, cache_dir):
    logs = tmp_path / "logs"
    common = [f"paths.log_dir={logs}", f"paths.cache_dir={cache_dir}"]
    proc = run_cli([*tiny_overrides(), *common], timeout=600)
    assert proc.returncode == 0, explain(proc)
    src = run_folder(proc.stdout)
    best = src / "checkpoints" / "best.ckpt"
    # no model.base_channels=4 here: the model is the checkpoint's
    overrides = [o for o in tiny_overrides() if not o.startswith("model.")]
    proc = run_cli([*overrides, f"init_from={best}", "trainer.freeze=features", *common], timeout=600)
    assert proc.returncode == 0, explain(proc)
    run = run_folder(proc.stdout)
    assert run != src
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["init_from"] == str(best) and cfg["model"]["base_channels"] == 4 and cfg["trainer"]["freeze"] == "features"
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1]
    before = load_checkpoint(best)["model_state_dict"]
    after = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert after["epoch"] == 1
    for key, value in before.items():
        if not key.startswith("classifier."):
            assert torch.equal(value, after["model_state_dict"][key]), key
    assert "initialised the model from" in (run / "train.log").read_text()


def test_packaged_weights_are_not_resumed():
    from seispolarity.config import register_configs
    from seispolarity.failures import UsageError
    from seispolarity.preflight import check_checkpoints

    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf"), job_name="test_finetune"):
        cfg = compose("train", overrides=["ckpt_path=pretrained:ppnet-synthetic"])
    with pytest.raises(UsageError, match="packaged weights are not one: fine-tune them with "
                                         "init_from=pretrained:ppnet-synthetic, or evaluate them with train=false"):
        check_checkpoints(cfg)
