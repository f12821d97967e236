"""The model zoo: shapes, cropping, parameter counts, state dicts, overfitting, auxiliary heads."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from seispolarity.models import (
    CFM,
    DiTingMotion,
    EQPolarity,
    PolarCAP,
    PolarityModel,
    PPNet,
    Ross,
    RPNet,
    get_model,
    list_models,
)

NAMES = ["ross", "ppnet", "eqpolarity", "diting_motion", "cfm", "rpnet", "polarcap"]

#: (num_classes, input_length) paper defaults
DEFAULTS = {"ross": (3, 400), "ppnet": (3, 400), "eqpolarity": (2, 600), "diting_motion": (3, 128),
            "cfm": (2, 160), "rpnet": (2, 400), "polarcap": (2, 64)}
#: parameter counts of the public PyTorch reimplementations (SeisPolarity), one-logit heads included
REFERENCE_PARAMS = {"ross": 3_665_731, "ppnet": 1_025_796, "eqpolarity": 1_159_601, "diting_motion": 30_146,
                    "cfm": 410_981, "rpnet": 6_044_338, "polarcap": 16_883}
#: our exact counts at the defaults (documented in each docstring; CFM has a 2-logit head: +51)
OUR_PARAMS = dict(REFERENCE_PARAMS, cfm=411_032)
#: smaller settings that keep the overfitting test fast on one CPU core (same code paths)
SMALL = {"eqpolarity": dict(input_length=200, projection_dim=64), "rpnet": dict(input_length=64)}
OVERFIT_LR = {"diting_motion": 1e-2, "polarcap": 1e-2}
OVERFIT_STEPS = {"diting_motion": 100}  # small network with dropout: a few more steps


def _targets(model: PolarityModel, batch: int, gen: torch.Generator) -> dict:
    return {"labels": torch.randint(0, model.num_classes, (batch,), generator=gen),
            "p_index": torch.full((batch,), model.input_length // 2, dtype=torch.long),
            "clarity": torch.randint(-1, 3, (batch,), generator=gen)}


# -- registry -------------------------------------------------------------------------------------
def test_registry_has_every_model():
    assert set(NAMES) <= set(list_models())
    classes = {"ross": Ross, "ppnet": PPNet, "eqpolarity": EQPolarity, "diting_motion": DiTingMotion,
               "cfm": CFM, "rpnet": RPNet, "polarcap": PolarCAP}
    for name, cls in classes.items():
        model = get_model(name)
        assert type(model) is cls and cls.registry_name == name
    assert isinstance(get_model("ROSS", num_classes=2), Ross)  # names are case-insensitive


def test_unknown_model_raises_keyerror():
    with pytest.raises(KeyError, match="unknown model"):
        get_model("no_such_model")


def test_ppnet_accepts_num_fm_classes():
    assert PPNet(num_fm_classes=3).num_classes == 3
    assert PPNet(num_fm_classes=2).num_classes == 2
    assert PPNet().num_classes == 3
    assert Ross(num_fm_classes=2).num_classes == 2
    with pytest.raises(ValueError):
        PPNet(num_classes=2, num_fm_classes=3)


# -- shapes and cropping --------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_defaults_shape_and_crop(name):
    torch.manual_seed(0)
    model = get_model(name).eval()
    num_classes, length = DEFAULTS[name]
    assert (model.num_classes, model.input_length, model.in_channels) == (num_classes, length, 1)
    x = torch.randn(3, 1, length)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (3, num_classes) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        # a longer window is centre-cropped to input_length
        long = torch.randn(3, 1, length + 51)
        start = (length + 51) // 2 - length // 2
        torch.testing.assert_close(model(long), model(long[..., start:start + length]))
        assert model(x[:, 0]).shape == (3, num_classes)  # (B, L) is accepted too
        probs, spread = model.predict_proba(x)
    assert probs.shape == (3, num_classes)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    assert (spread is not None) == (name == "rpnet")
    with pytest.raises(ValueError):
        model(torch.randn(2, 1, length - 1))
    with pytest.raises(ValueError):
        model(torch.randn(2, 2, length))


@pytest.mark.parametrize("name", NAMES)
def test_other_settings_shape(name):
    """Non-default lengths and class counts build and give the right shape."""
    num_classes, length = DEFAULTS[name]
    other = 3 if num_classes == 2 else 2
    kwargs = dict(SMALL.get(name, {}), num_classes=other)
    kwargs["input_length"] = kwargs.get("input_length", length) + 12
    model = get_model(name, **kwargs).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, model.input_length)).shape == (2, other)


# -- parameter counts -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_parameter_count(name):
    n = get_model(name).num_parameters()
    assert n == OUR_PARAMS[name]
    assert abs(n - REFERENCE_PARAMS[name]) <= 0.01 * REFERENCE_PARAMS[name]
    assert get_model(name).describe()["parameters"] == n


# -- state dicts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name, tmp_path):
    torch.manual_seed(1)
    model = get_model(name)
    # move BatchNorm statistics away from their initial values so they are checked too
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 1, model.input_length))
    model.eval()
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(2)
    fresh = get_model(name)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    fresh.eval()
    x = torch.randn(2, 1, model.input_length)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


# -- learning -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_overfits_one_batch(name):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = get_model(name, **SMALL.get(name, {}))
    x = torch.randn(16, 1, model.input_length, generator=gen)
    targets = _targets(model, 16, gen)
    y = targets["labels"]
    opt = torch.optim.Adam(model.parameters(), lr=OVERFIT_LR.get(name, 1e-3))
    model.train()
    first = None
    for _ in range(OVERFIT_STEPS.get(name, 60)):
        logits, aux = model(x, targets)
        loss = F.cross_entropy(logits, y)
        first = loss.item() if first is None else first
        total = loss if aux is None else loss + aux
        opt.zero_grad()
        total.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        final = F.cross_entropy(model(x), y).item()
    assert final < 0.1 < first, (first, final)


@pytest.mark.parametrize("name", NAMES)
def test_forward_with_aux(name):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = get_model(name, **SMALL.get(name, {})).train()
    x = torch.randn(4, 1, model.input_length, generator=gen)
    targets = _targets(model, 4, gen)
    logits, aux = model(x, targets)
    assert logits.shape == (4, model.num_classes)
    has_aux = name in ("ppnet", "diting_motion", "polarcap")
    assert set(model.aux_targets) <= set(targets)
    if has_aux:
        assert aux is not None and aux.dim() == 0 and torch.isfinite(aux)
        aux.backward()
    else:
        assert aux is None and model.aux_targets == ()
    logits, aux = model(x, {})  # nothing to learn from
    assert logits.shape == (4, model.num_classes)
    if name == "polarcap":  # the reconstruction needs no target
        assert aux is not None and torch.isfinite(aux)
    else:
        assert aux is None
    model.eval()
    with torch.no_grad():  # the aux path gives the same logits as classify
        torch.testing.assert_close(model(x, targets)[0], model(x))


# -- model-specific -------------------------------------------------------------------------------
def test_ppnet_mask_head():
    torch.manual_seed(0)
    model = PPNet().eval()
    x = torch.randn(3, 1, 400)
    with torch.no_grad():
        mask = model.pick_mask(x)
        assert mask.shape == (3, 400) and ((mask >= 0) & (mask <= 1)).all()
        target = model.mask_target(torch.tensor([200, 10, 399]))
        assert target.shape == (3, 400) and target[0, 200] == 1 and target[0, 230] < 0.02
        p = torch.tensor([200, 180, 230])
        _, loss = model(x, {"p_index": p})
        # a longer window: the P index is moved with the crop
        long = torch.randn(3, 1, 500)
        long[..., 50:450] = x
        _, loss_long = model(long, {"p_index": p + 50})
        torch.testing.assert_close(loss, loss_long)
        # rows without a pick (-1) are ignored; no pick at all gives a zero
        _, loss_partial = model(x, {"p_index": torch.tensor([200, -1, -1])})
        _, loss_one = model(x[:1], {"p_index": p[:1]})
        torch.testing.assert_close(loss_partial, loss_one)
        _, none = model(x, {"p_index": torch.full((3,), -1)})
        assert none == 0
    odd = PPNet(input_length=404).eval()  # not a multiple of 8: the mask is resampled to full length
    with torch.no_grad():
        assert odd.pick_mask(torch.randn(2, 1, 404)).shape == (2, 404)
    heavier = PPNet(mask_loss_weight=2.5).eval()
    heavier.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(heavier(x, {"p_index": p})[1], 2.5 * loss)


def test_diting_motion_input_and_clarity():
    torch.manual_seed(0)
    model = DiTingMotion().eval()
    x = torch.tensor([[[0.0, 1.0, 3.0, 2.0, 2.0, -1.0] + [0.0] * 122]])
    two = model.two_channel_input(x)
    assert two.shape == (1, 2, 128)
    assert two[0, 1, :6].tolist() == [1.0, 1.0, -1.0, 0.0, -1.0, 1.0] and two[0, 1, -1] == 0
    assert two[0, 0].abs().max() == 1  # demeaned, peak-normalised trace
    with torch.no_grad():
        clarity = model.clarity(torch.randn(5, 1, 128))
        assert clarity.shape == (5, 3)
        torch.testing.assert_close(clarity.sum(-1), torch.ones(5))
        x = torch.randn(4, 1, 128)
        _, only_clarity = model(x, {"clarity": torch.tensor([0, 1, 2, -1])})
        assert torch.isfinite(only_clarity) and only_clarity > 0
        _, no_clarity = model(x, {"clarity": torch.full((4,), -1)})
        assert no_clarity == 0
        _, both = model(x, {"clarity": torch.tensor([0, 1, 2, -1]), "labels": torch.tensor([0, 1, 2, 0])})
        assert both > only_clarity


def test_eqpolarity_sigmoid_head():
    model = EQPolarity(input_length=200, projection_dim=32).eval()
    assert model.head.out_features == 1  # the paper's single sigmoid unit ...
    with torch.no_grad():
        logits = model(torch.randn(3, 1, 200))
    torch.testing.assert_close(logits.sum(-1), torch.zeros(3))  # ... given as the logits (z/2, -z/2)
    assert EQPolarity(num_classes=3, input_length=200, projection_dim=32).head.out_features == 3


def test_polarcap_reconstruction():
    torch.manual_seed(0)
    model = PolarCAP().eval()
    x = 5 * torch.randn(2, 1, 64)
    with torch.no_grad():
        recon = model.reconstruct(x)
        assert recon.shape == (2, 1, 64) and recon.abs().max() <= 1
        _, loss = model(x, {})
        normalised = x / x.abs().amax(-1, keepdim=True)
        torch.testing.assert_close(loss, F.mse_loss(recon, normalised))
    assert PolarCAP(recon_loss_weight=0.0).eval()(x, {})[1] == 0


@pytest.mark.parametrize("start_in_train_mode", [False, True])
def test_rpnet_mc_dropout(start_in_train_mode):
    torch.manual_seed(0)
    model = RPNet(input_length=64, mc_samples=7)
    model.train(start_in_train_mode)
    x = torch.randn(3, 1, 64)
    samples = model.mc_probabilities(x)
    assert samples.shape == (7, 3, 2)
    assert not torch.allclose(samples[0], samples[1])  # the passes differ
    mean, std = model.predict_proba(x, mc_samples=30)
    assert mean.shape == (3, 2) and std.shape == (3,)
    torch.testing.assert_close(mean.sum(-1), torch.ones(3))
    assert (std >= 0).all() and (std > 0).any()
    assert model.training == start_in_train_mode  # the mode is left as it was
    assert all(m.training == start_in_train_mode for m in model.modules())
    model.eval()
    with torch.no_grad():  # plain eval forward stays deterministic
        torch.testing.assert_close(model(x), model(x))
    _, std_default = model.predict_proba(x)
    assert std_default.shape == (3,)
    _, std_one = model.predict_proba(x, mc_samples=1)
    assert (std_one == 0).all()
    assert math.isclose(RPNet(dropout=0.0).predict_proba(torch.randn(1, 1, 400))[1].item(), 0.0, abs_tol=1e-7)
