"""One description of optimizers and schedulers (issue 15 item 2): the registry in
``seispolarity/training/optim.py`` is what the Python API's names and the runner's ``optimizer`` /
``scheduler`` groups both resolve through, so the same name gives the same torch object either way,
the runner's schemas carry the registry's defaults, and a registry entry is a config option."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from conftest import ROOT
from seispolarity import config as hydra_config
from seispolarity import runner
from seispolarity.training import TrainingConfig, optim
from seispolarity.training.optim import (
    DEFAULT_LR,
    OPTIMIZERS,
    SCHEDULERS,
    build_optimizer,
    build_scheduler,
    fields_from_node,
)

CONF = ROOT / "conf"
PATHS = [f"paths.root_dir={ROOT}", "paths.output_dir=/tmp/seispolarity-test-optim"]

hydra_config.register_configs()


def composed(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF), job_name="test"):
        return compose("train", overrides=[*overrides, *PATHS])


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))


def group(opt: torch.optim.Optimizer) -> dict:
    return {k: v for k, v in opt.param_groups[0].items() if k != "params"}


def test_the_config_groups_are_the_registry():
    assert sorted(p.stem for p in (CONF / "optimizer").glob("*.yaml")) == sorted(OPTIMIZERS)
    assert sorted(p.stem for p in (CONF / "scheduler").glob("*.yaml")) == sorted([*SCHEDULERS, "none"])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_an_optimizer_name_builds_the_same_optimizer_from_python_and_from_the_runner(name):
    cfg = composed([f"optimizer={name}"])
    node = cfg.optimizer
    # the schema's keys and defaults are the registry's; lr is the top-level lr, DEFAULT_LR
    assert node._target_ == OPTIMIZERS[name].target
    assert {k: v for k, v in node.items() if not k.startswith("_")} == {
        "lr": DEFAULT_LR, **{k: list(v) if isinstance(v, tuple) else v for k, v in OPTIMIZERS[name].defaults.items()}}
    assert cfg.lr == DEFAULT_LR == TrainingConfig().learning_rate
    plain = build_optimizer(model().parameters(), TrainingConfig(optimizer=name))
    through_runner = build_optimizer(model().parameters(), runner.training_config(cfg))
    as_partial = instantiate(node, _convert_="all")(model().parameters())  # the node is still a valid partial
    assert type(plain) is type(through_runner) is type(as_partial) is OPTIMIZERS[name].cls
    assert group(plain) == group(through_runner) == group(as_partial)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_a_schedule_name_builds_the_same_schedule_from_python_and_from_the_runner(name):
    cfg = composed([f"scheduler={name}", "trainer.epochs=7"])
    train_config = runner.training_config(cfg)
    assert train_config.lr_scheduler == name and train_config.epochs == 7
    plain_config = TrainingConfig(lr_scheduler=name, epochs=7)
    a = build_scheduler(torch.optim.SGD(model().parameters(), lr=0.1), plain_config)
    b = build_scheduler(torch.optim.SGD(model().parameters(), lr=0.1), train_config)
    c = instantiate(cfg.scheduler, _convert_="all")(torch.optim.SGD(model().parameters(), lr=0.1))
    assert type(a) is type(b) is type(c) is SCHEDULERS[name].cls
    assert a.state_dict() == b.state_dict() == c.state_dict()
    if name == "cosine":  # T_max: the run's epochs, both ways
        assert a.T_max == b.T_max == 7


def test_runner_overrides_reach_the_optimizer_and_nothing_is_reconciled():
    cfg = composed(["optimizer=sgd", "lr=2e-2", "optimizer.momentum=0.5", "optimizer.nesterov=true"])
    opt = build_optimizer(model().parameters(), runner.training_config(cfg))
    assert type(opt) is torch.optim.SGD
    assert group(opt)["lr"] == 2e-2 and group(opt)["momentum"] == 0.5 and group(opt)["nesterov"] is True
    cfg = composed(["optimizer=adamw", "optimizer.weight_decay=0.05", "optimizer.betas=[0.8,0.9]"])
    train_config = runner.training_config(cfg)
    assert (train_config.optimizer, train_config.weight_decay, train_config.momentum) == ("adamw", 0.05, None)
    assert group(build_optimizer(model().parameters(), train_config))["betas"] == (0.8, 0.9)
    # an explicit optimizer.lr is the learning rate; the top-level lr is only its default
    cfg = composed(["optimizer.lr=5e-2", "lr=1e-4"])
    assert runner.training_config(cfg).learning_rate == 5e-2 and cfg.lr == 1e-4
    cfg = composed(["scheduler=step", "scheduler.step_size=3", "scheduler.gamma=0.5"])
    assert runner.training_config(cfg).lr_scheduler_params == {"step_size": 3, "gamma": 0.5}


def test_the_trainer_group_does_not_describe_the_optimizer():
    for key in (*optim.OPTIMIZER_FIELDS, *optim.SCHEDULER_FIELDS):
        with pytest.raises(ConfigCompositionException, match=f"trainer.{key}"):
            composed([f"trainer.{key}=1"])
    assert not hasattr(hydra_config, "TRAINER_EXCLUDED") and not hasattr(runner, "_resolve_lr")


def test_a_registry_entry_is_a_config_option(monkeypatch):
    entry = optim.Factory("torch.optim.RMSprop", {"alpha": 0.95, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0})
    monkeypatch.setitem(OPTIMIZERS, "rmsprop", entry)
    schema = hydra_config.optimizer_schemas()["rmsprop"]
    defaults = {f.name: f.default for f in dataclasses.fields(schema)}
    assert defaults["_target_"] == "torch.optim.RMSprop" and defaults["alpha"] == 0.95
    config = TrainingConfig(optimizer="rmsprop", momentum=0.3, optimizer_params={"alpha": 0.9})
    opt = build_optimizer(model().parameters(), config)
    assert type(opt) is torch.optim.RMSprop and group(opt)["alpha"] == 0.9 and group(opt)["momentum"] == 0.3
    fields = fields_from_node({"_target_": "torch.optim.RMSprop", "_partial_": True, "lr": 0.01, "alpha": 0.9,
                               "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0}, None)
    assert fields["optimizer"] == "rmsprop" and fields["optimizer_params"] == {"alpha": 0.9, "eps": 1e-8}


def test_python_api_defaults_come_from_the_registry():
    config = TrainingConfig()
    assert config.learning_rate == DEFAULT_LR and config.weight_decay is None and config.momentum is None
    assert config.device == "auto"
    assert group(build_optimizer(model().parameters(), TrainingConfig(optimizer="adamw")))["weight_decay"] == 1e-2
    sgd = group(build_optimizer(model().parameters(), TrainingConfig(optimizer="sgd")))
    assert sgd["momentum"] == 0.9 and sgd["weight_decay"] == 1e-5 and sgd["lr"] == DEFAULT_LR
    step = build_scheduler(torch.optim.SGD(model().parameters(), lr=0.1), TrainingConfig(lr_scheduler="step"))
    assert (step.step_size, step.gamma) == (10, 0.1)


@pytest.mark.parametrize("kwargs,message", [
    ({"optimizer": "rmsprop"}, "TrainingConfig.optimizer='rmsprop': expected one of ('adam', 'adamw', 'sgd')"),
    ({"momentum": 0.9}, "optimizer='adam' has no momentum"),
    ({"optimizer_params": {"lr": 0.1}}, "TrainingConfig.learning_rate sets it"),
    ({"optimizer": "sgd", "optimizer_params": {"betas": (0.9, 0.99)}}, "keywords of 'sgd' only"),
    ({"lr_scheduler": "cosine", "lr_scheduler_params": {"t_max": 3}}, "not ['t_max']"),
    ({"lr_scheduler": "linear"}, "TrainingConfig.lr_scheduler='linear'"),
])
def test_bad_names_and_keywords_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError) as err:
        TrainingConfig(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_node_that_is_not_in_the_registry_is_a_one_line_error():
    with pytest.raises(ValueError) as err:
        fields_from_node({"_target_": "torch.optim.Adagrad", "_partial_": True, "lr": 0.1}, None)
    assert "optimizer._target_='torch.optim.Adagrad' is not in seispolarity.training.optim.OPTIMIZERS" in str(err.value)
    assert "\n" not in str(err.value)
