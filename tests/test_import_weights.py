"""Importers of published weights (`python -m seispolarity.pretrained import ...`): small files written
here in the published layouts (the CFM authors' Keras 2 `.hdf5` with its group and key names, Keras 2
weights-only and Keras 3 `.weights.h5` files, SeisPolarity 0.1.4 `.pth` state dicts) with random
weights; the imported model's outputs are checked against plain numpy forward passes of the
original networks written below (channels-last Keras semantics for CFM, 0.1.4's layer order for the
others)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from seispolarity.inference import Predictor
from seispolarity.pretrained.__main__ import main as pretrained_main
from seispolarity.pretrained.keras_cfm import KerasImportError, cfm_from_keras, import_cfm_keras
from seispolarity.pretrained.seispolarity014 import import_seispolarity014
from seispolarity.training.checkpoint import load_checkpoint

# -- the published CFM, layer by layer (Keras 2 Sequential, automatic names) -------------------------
CFM_LAYERS = [  # (name, class, config)
    ("conv1d", "Conv1D", {"filters": 32, "kernel_size": [5], "padding": "same", "activation": "relu"}),
    ("dropout", "Dropout", {"rate": 0.2}),
    ("conv1d_1", "Conv1D", {"filters": 64, "kernel_size": [4], "padding": "valid", "activation": "relu"}),
    ("max_pooling1d", "MaxPooling1D", {"pool_size": [2]}),
    ("conv1d_2", "Conv1D", {"filters": 128, "kernel_size": [3], "padding": "valid", "activation": "relu"}),
    ("max_pooling1d_1", "MaxPooling1D", {"pool_size": [2]}),
    ("conv1d_3", "Conv1D", {"filters": 256, "kernel_size": [5], "padding": "same", "activation": "relu"}),
    ("dropout_1", "Dropout", {"rate": 0.2}),
    ("conv1d_4", "Conv1D", {"filters": 128, "kernel_size": [3], "padding": "valid", "activation": "relu"}),
    ("max_pooling1d_2", "MaxPooling1D", {"pool_size": [2]}),
    ("flatten", "Flatten", {}),
    ("dense", "Dense", {"units": 50, "activation": "softsign"}),
    ("dense_1", "Dense", {"units": 1, "activation": "sigmoid"}),
]


def cfm_weights(seed: int) -> dict[str, list[np.ndarray]]:
    """Random weights in Keras shapes: Conv1D kernel (k, in, out), Dense kernel (in, out)."""
    rng = np.random.default_rng(seed)
    out, cin = {}, 1
    for name, cls, cfg in CFM_LAYERS:
        if cls == "Conv1D":
            k, cout = cfg["kernel_size"][0], cfg["filters"]
            out[name] = [rng.normal(0, 1 / np.sqrt(k * cin), (k, cin, cout)).astype(np.float32),
                         rng.normal(0, 0.1, cout).astype(np.float32)]
            cin = cout
        elif cls == "Dense":
            fan_in = 18 * 128 if name == "dense" else 50
            out[name] = [rng.normal(0, 1 / np.sqrt(fan_in), (fan_in, cfg["units"])).astype(np.float32),
                         rng.normal(0, 0.1, cfg["units"]).astype(np.float32)]
    return out


def model_config() -> str:
    layers = [{"class_name": "InputLayer", "config": {"batch_input_shape": [None, 160, 1], "dtype": "float32",
                                                      "name": "conv1d_input"}}]
    for name, cls, cfg in CFM_LAYERS:
        entry = {"name": name, "trainable": True, "dtype": "float32", **cfg}
        if name == "conv1d":
            entry["batch_input_shape"] = [None, 160, 1]
        layers.append({"class_name": cls, "config": entry})
    return json.dumps({"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}})


def write_keras2_model(path: Path, weights: dict[str, list[np.ndarray]]) -> Path:
    """What `model.save("CFM.hdf5")` writes under TensorFlow 2.9 (Keras 2): the architecture in the root
    attribute `model_config`, weights at `model_weights/<layer>/<layer>/kernel:0` and `bias:0`."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.9.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = model_config()
        f.attrs["training_config"] = json.dumps({"loss": "binary_crossentropy"})
        group = f.create_group("model_weights")
        _keras2_groups(group, weights)
        f.create_group("optimizer_weights")
    return path


def _keras2_groups(group: h5py.Group, weights: dict[str, list[np.ndarray]]) -> None:
    group.attrs["layer_names"] = np.array([name.encode() for name, _, _ in CFM_LAYERS])
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = b"2.9.0"
    for name, _, _ in CFM_LAYERS:
        layer = group.create_group(name)
        if name in weights:
            layer.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()])
            inner = layer.create_group(name)
            inner.create_dataset("kernel:0", data=weights[name][0])
            inner.create_dataset("bias:0", data=weights[name][1])
        else:
            layer.attrs["weight_names"] = np.array([], dtype="S1")


def write_keras2_weights(path: Path, weights) -> Path:
    """`model.save_weights("x.h5")` (Keras 2): the layer groups at the root, no architecture."""
    with h5py.File(path, "w") as f:
        _keras2_groups(f, weights)
    return path


def write_keras3_weights(path: Path, weights) -> Path:
    """Keras 3 `model.save_weights("x.weights.h5")`: `layers/<layer>/vars/0` (kernel), `vars/1` (bias)."""
    with h5py.File(path, "w") as f:
        layers = f.create_group("layers")
        for name, _, _ in reversed(CFM_LAYERS):  # creation order must not matter
            variables = layers.create_group(name).create_group("vars")
            for i, array in enumerate(weights.get(name, [])):
                variables.create_dataset(str(i), data=array)
        f.create_group("vars")
    return path


# -- numpy forward passes ----------------------------------------------------------------------------
def conv1d_cf(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Channels-first cross-correlation: x (N, C, L), w (O, C, K) -> (N, O, L')."""
    x = np.pad(x, ((0, 0), (0, 0), pad))
    k = w.shape[2]
    windows = np.stack([x[:, :, i:i + x.shape[2] - k + 1] for i in range(k)], axis=-1)  # (N, C, L', K)
    return np.einsum("nclk,ock->nol", windows, w) + b[None, :, None]


def conv1d_keras(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, padding: str) -> np.ndarray:
    """Keras Conv1D, channels-last: x (N, L, C), kernel (K, C, O)."""
    k = kernel.shape[0]
    pad = ((k - 1) // 2, k - 1 - (k - 1) // 2) if padding == "same" else (0, 0)
    return conv1d_cf(x.transpose(0, 2, 1), kernel.transpose(2, 1, 0), bias, pad).transpose(0, 2, 1)


def relu(x):
    return np.maximum(x, 0)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def keras_cfm_p_up(x: np.ndarray, weights) -> np.ndarray:
    """The published CFM in numpy: (N, 160) windows -> P(up), the sigmoid output."""
    h = x[:, :, None].astype(np.float64)
    for name, cls, cfg in CFM_LAYERS:
        if cls == "Conv1D":
            h = relu(conv1d_keras(h, *weights[name], cfg["padding"]))
        elif cls == "MaxPooling1D":
            n = h.shape[1] // 2
            h = h[:, :2 * n].reshape(h.shape[0], n, 2, h.shape[2]).max(axis=2)
        elif cls == "Flatten":
            h = h.reshape(h.shape[0], -1)  # channels-last: index t * C + c
        elif cls == "Dense":
            h = h @ weights[name][0] + weights[name][1]
            h = h / (1 + np.abs(h)) if cfg["activation"] == "softsign" else sigmoid(h)
    return h[:, 0]


def cfm_preprocess(x: np.ndarray) -> np.ndarray:
    """The authors' preprocessing of 160-sample windows (P at 80): demean on the pre-P part, clip at
    20 x the pre-P peak, divide by the peak."""
    pre = x[:, :80]
    x = x - pre.mean(axis=1, keepdims=True)
    limit = 20 * np.abs(pre - pre.mean(axis=1, keepdims=True)).max(axis=1, keepdims=True)
    x = np.clip(x, -limit, limit)
    return x / np.abs(x).max(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (6, 160)).cumsum(axis=1).astype(np.float32)
    x[:, 80:] += 40 * np.sign(rng.normal(size=(6, 1))) * np.hanning(80)[None, :]  # a first motion at P
    return x


def p_up(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x)[:, None, :]), dim=1)[:, 0].double().numpy()


# -- CFM from Keras -----------------------------------------------------------------------------------
@pytest.mark.parametrize("writer", [write_keras2_model, write_keras2_weights, write_keras3_weights])
def test_cfm_keras_layouts_give_the_published_outputs(tmp_path, windows, writer):
    weights = cfm_weights(0)
    path = writer(tmp_path / "CFM.hdf5", weights)
    model, meta = cfm_from_keras(path)
    assert model.describe()["init_kwargs"]["fc_activation"] == "softsign" and model.input_length == 160
    x = cfm_preprocess(windows)
    expected = keras_cfm_p_up(x, weights)
    np.testing.assert_allclose(p_up(model, x), expected, rtol=0, atol=2e-6)
    assert expected.min() < 0.5 < expected.max() or np.ptp(expected) > 1e-3  # not a constant output


def test_cfm_import_writes_a_checkpoint_the_predictor_applies_with_its_preprocessing(tmp_path, windows):
    weights = cfm_weights(1)
    src = write_keras2_model(tmp_path / "CFM_with_timeshift.hdf5", weights)
    out = tmp_path / "cfm.ckpt"
    assert pretrained_main(["import", "cfm-keras", str(src), str(out)]) == 0
    state = torch.load(out, weights_only=True)
    assert state["model"]["name"] == "cfm" and state["data"]["normalize"] == "cfm"
    assert state["data"]["window_length"] == 160 and state["class_names"] == ["up", "down"]
    assert state["imported"]["format"] == "cfm-keras" and len(state["imported"]["files"][0]["sha256"]) == 64
    # raw 400-sample traces with an offset and P at 200: the Predictor crops 160 around P and preprocesses
    rng = np.random.default_rng(3)
    traces = np.concatenate([rng.normal(0, 1, (6, 120)).cumsum(axis=1), windows + 5.0,
                             rng.normal(0, 1, (6, 120)).cumsum(axis=1)], axis=1).astype(np.float32) + 3.0
    result = Predictor(out, device="cpu").predict(traces, p_index=200)
    expected = keras_cfm_p_up(cfm_preprocess(traces[:, 120:280].astype(np.float64)), weights)
    np.testing.assert_allclose(result.probabilities[:, 0], expected, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(result.predictions, np.where(expected > 0.5, 0, 1))


def test_cfm_ensemble_averages_the_members(tmp_path, windows):
    weights = [cfm_weights(10 + i) for i in range(3)]
    files = [write_keras2_model(tmp_path / f"CFM_ensemble_{i + 1}.hdf5", w) for i, w in enumerate(weights)]
    out = tmp_path / "ensemble.ckpt"
    import_cfm_keras(files, out)
    state = load_checkpoint(out)
    assert state["model"]["name"] == "ensemble" and len(state["model"]["init_kwargs"]["members"]) == 3
    x = cfm_preprocess(windows)
    expected = np.mean([keras_cfm_p_up(x, w) for w in weights], axis=0)
    predictor = Predictor(out, device="cpu")
    np.testing.assert_allclose(predictor.predict(windows).probabilities[:, 0], expected, rtol=0, atol=2e-6)


def test_not_the_published_cfm_is_one_clear_error(tmp_path):
    weights = cfm_weights(0)
    weights["conv1d_2"][0] = weights["conv1d_2"][0][:2]  # kernel 2 instead of 3
    path = write_keras2_model(tmp_path / "other.hdf5", weights)
    with pytest.raises(KerasImportError, match=r"other\.hdf5: not the published CFM: convolution kernels"):
        cfm_from_keras(path)
    (tmp_path / "notes.hdf5").write_text("not hdf5")
    assert pretrained_main(["import", "cfm-keras", str(tmp_path / "notes.hdf5"), str(tmp_path / "x.ckpt")]) == 1
    assert not (tmp_path / "x.ckpt").exists()


# -- SeisPolarity 0.1.4 -------------------------------------------------------------------------------
def _randn(rng, *shape, scale=None):
    scale = scale if scale is not None else 1 / np.sqrt(np.prod(shape[1:]) if len(shape) > 1 else 1)
    return torch.from_numpy(rng.normal(0, scale, shape).astype(np.float32))


def _bn(rng, prefix: str, n: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": _randn(rng, n, scale=0.2) + 1, f"{prefix}.bias": _randn(rng, n, scale=0.1),
            f"{prefix}.running_mean": _randn(rng, n, scale=0.1), f"{prefix}.running_var": _randn(rng, n, scale=0.1).abs() + 0.5,
            f"{prefix}.num_batches_tracked": torch.tensor(7)}


def bn_np(x, sd, prefix, axis=1):
    shape = [1] * x.ndim
    shape[axis] = -1
    g = {k: sd[f"{prefix}.{k}"].double().numpy().reshape(shape) for k in ("weight", "bias", "running_mean", "running_var")}
    return (x - g["running_mean"]) / np.sqrt(g["running_var"] + 1e-5) * g["weight"] + g["bias"]


def maxpool_cf(x):
    n = x.shape[2] // 2
    return x[:, :, :2 * n].reshape(x.shape[0], x.shape[1], n, 2).max(axis=3)


def np_(t):
    return t.double().numpy()


def ross014_state(rng, b=4, fc=8, classes=3):
    """0.1.4's SCSN (Ross) state dict, its own key names."""
    seq = "shared_backbone.sequential"
    sd = {}
    cin = 1
    for i, (cout, k) in zip((0, 4, 8), ((b, 21), (2 * b, 15), (4 * b, 11))):
        sd[f"{seq}.{i}.weight"], sd[f"{seq}.{i}.bias"] = _randn(rng, cout, cin, k), _randn(rng, cout, scale=0.1)
        sd.update(_bn(rng, f"{seq}.{i + 1}", cout))
        cin = cout
    sd[f"{seq}.13.weight"], sd[f"{seq}.13.bias"] = _randn(rng, fc, 4 * b * 50), _randn(rng, fc, scale=0.1)
    sd.update(_bn(rng, f"{seq}.14", fc))
    sd[f"{seq}.16.weight"], sd[f"{seq}.16.bias"] = _randn(rng, fc, fc), _randn(rng, fc, scale=0.1)
    sd.update(_bn(rng, f"{seq}.17", fc))
    sd["fm_head.weight"], sd["fm_head.bias"] = _randn(rng, classes, fc), _randn(rng, classes, scale=0.1)
    return sd


def ross014_np(x, sd):
    seq = "shared_backbone.sequential"
    h = x[:, None, :].astype(np.float64)
    for i in (0, 4, 8):
        w = np_(sd[f"{seq}.{i}.weight"])
        k = w.shape[2]
        h = conv1d_cf(h, w, np_(sd[f"{seq}.{i}.bias"]), ((k - 1) // 2, k // 2))
        h = maxpool_cf(relu(bn_np(h, sd, f"{seq}.{i + 1}")))
    h = h.reshape(h.shape[0], -1)
    for lin, bn in ((13, 14), (16, 17)):
        h = relu(bn_np(h @ np_(sd[f"{seq}.{lin}.weight"]).T + np_(sd[f"{seq}.{lin}.bias"]), sd, f"{seq}.{bn}"))
    return h @ np_(sd["fm_head.weight"]).T + np_(sd["fm_head.bias"])


def cfm014_state(rng, b=32):
    sd, cin = {}, 1
    for i, (cout, k) in enumerate(((b, 5), (2 * b, 4), (4 * b, 3), (8 * b, 5), (4 * b, 3)), start=1):
        sd[f"conv{i}.weight"], sd[f"conv{i}.bias"] = _randn(rng, cout, cin, k), _randn(rng, cout, scale=0.1)
        cin = cout
    sd["fc1.weight"], sd["fc1.bias"] = _randn(rng, 50, 4 * b * 18), _randn(rng, 50, scale=0.1)
    sd["fc2.weight"], sd["fc2.bias"] = _randn(rng, 1, 50), _randn(rng, 1, scale=0.1)
    return sd


def cfm014_np(x, sd):
    h = x[:, None, :].astype(np.float64)
    pads = ((2, 2), (0, 0), (0, 0), (2, 2), (0, 0))
    for i, pad in enumerate(pads, start=1):
        h = relu(conv1d_cf(h, np_(sd[f"conv{i}.weight"]), np_(sd[f"conv{i}.bias"]), pad))
        if i in (2, 3, 5):
            h = maxpool_cf(h)
    h = relu(h.reshape(h.shape[0], -1) @ np_(sd["fc1.weight"]).T + np_(sd["fc1.bias"]))
    # P(down): 0.1.4 trains its one-output CFM with BCE on its labels (0 up, 1 down)
    return sigmoid(h @ np_(sd["fc2.weight"]).T + np_(sd["fc2.bias"]))[:, 0]


def ppnet014_state(rng, b=4, dense=8, classes=3):
    """0.1.4's PPNet (APP_*) state dict with its key names; LSTM units 2 x 4b, 4 attention heads."""
    sd, cin, widths = {}, 1, (b, 2 * b, 4 * b)
    for i, cout in enumerate(widths, start=1):
        sd[f"encoder_block{i}.0.weight"], sd[f"encoder_block{i}.0.bias"] = _randn(rng, cout, cin, 3), _randn(rng, cout, scale=0.1)
        sd.update(_bn(rng, f"encoder_block{i}.3", cout))
        cin = cout
    units = 2 * widths[2]
    sd["lstm.weight_ih_l0"], sd["lstm.weight_hh_l0"] = _randn(rng, 4 * units, cin), _randn(rng, 4 * units, units)
    sd["lstm.bias_ih_l0"], sd["lstm.bias_hh_l0"] = _randn(rng, 4 * units, scale=0.1), _randn(rng, 4 * units, scale=0.1)
    sd["attention.in_proj_weight"], sd["attention.in_proj_bias"] = _randn(rng, 3 * units, units), _randn(rng, 3 * units, scale=0.1)
    sd["attention.out_proj.weight"], sd["attention.out_proj.bias"] = _randn(rng, units, units), _randn(rng, units, scale=0.1)
    cin = units
    for i, cout in enumerate(reversed(widths), start=1):
        sd[f"decoder_block{i}.1.weight"], sd[f"decoder_block{i}.1.bias"] = _randn(rng, cout, cin, 3), _randn(rng, cout, scale=0.1)
        sd.update(_bn(rng, f"decoder_block{i}.3", cout))
        cin = cout
    sd["out1_conv.weight"], sd["out1_conv.bias"] = _randn(rng, 1, b, 3), _randn(rng, 1, scale=0.1)
    sd["dense.weight"], sd["dense.bias"] = _randn(rng, dense, units * 50), _randn(rng, dense, scale=0.1)
    sd["out2_dense.weight"], sd["out2_dense.bias"] = _randn(rng, classes, dense), _randn(rng, classes, scale=0.1)
    return sd


def ppnet014_np(x, sd, heads=4):
    """0.1.4's PPNet classification output (before its softmax): encoder, LSTM, self-attention
    (its output, no residual), flatten, dense + ReLU, output layer."""
    h = x[:, None, :].astype(np.float64)
    for i in (1, 2, 3):
        h = relu(conv1d_cf(h, np_(sd[f"encoder_block{i}.0.weight"]), np_(sd[f"encoder_block{i}.0.bias"]), (1, 1)))
        h = bn_np(maxpool_cf(h), sd, f"encoder_block{i}.3")
    n = h.shape[0]
    attn = mha_np(lstm_np(h.transpose(0, 2, 1), sd, "lstm"), sd, "attention", heads)
    h = relu(attn.reshape(n, -1) @ np_(sd["dense.weight"]).T + np_(sd["dense.bias"]))
    return h @ np_(sd["out2_dense.weight"]).T + np_(sd["out2_dense.bias"])


def lstm_np(seq, sd, prefix):
    """torch's one-layer nn.LSTM (batch_first) over seq (N, T, C), zero initial state: (N, T, units)."""
    n, steps, _ = seq.shape
    w_ih, w_hh = np_(sd[f"{prefix}.weight_ih_l0"]), np_(sd[f"{prefix}.weight_hh_l0"])
    bias = np_(sd[f"{prefix}.bias_ih_l0"]) + np_(sd[f"{prefix}.bias_hh_l0"])
    units = w_hh.shape[1]
    hid, cell, outs = np.zeros((n, units)), np.zeros((n, units)), []
    for t in range(steps):  # torch's gate order: input, forget, cell, output
        gates = seq[:, t] @ w_ih.T + hid @ w_hh.T + bias
        i_g, f_g, g_g, o_g = np.split(gates, 4, axis=1)
        cell = sigmoid(f_g) * cell + sigmoid(i_g) * np.tanh(g_g)
        hid = sigmoid(o_g) * np.tanh(cell)
        outs.append(hid)
    return np.stack(outs, axis=1)


def mha_np(seq, sd, prefix, heads):
    """torch's nn.MultiheadAttention (batch_first) self-attention of seq (N, T, E): packed in_proj, heads
    of E / heads, scaled dot product, out_proj."""
    n, steps, units = seq.shape
    wq, wk, wv = np.split(np_(sd[f"{prefix}.in_proj_weight"]), 3)
    bq, bk, bv = np.split(np_(sd[f"{prefix}.in_proj_bias"]), 3)
    d = units // heads

    def split(a):
        return a.reshape(n, steps, heads, d).transpose(0, 2, 1, 3)

    q, k, v = split(seq @ wq.T + bq), split(seq @ wk.T + bk), split(seq @ wv.T + bv)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    attn = (scores / scores.sum(axis=-1, keepdims=True)) @ v
    return attn.transpose(0, 2, 1, 3).reshape(n, steps, units) @ np_(sd[f"{prefix}.out_proj.weight"]).T + \
        np_(sd[f"{prefix}.out_proj.bias"])


def layer_norm_np(x, sd, prefix, eps=1e-5):
    mu, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * np_(sd[f"{prefix}.weight"]) + np_(sd[f"{prefix}.bias"])


_erf = np.vectorize(math.erf)


def gelu_np(x):
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


def maxpool3s2p1_np(x):
    """MaxPool1d(kernel_size=3, stride=2, padding=1), x (N, C, L): padding counts as -inf."""
    x = np.pad(x, ((0, 0), (0, 0), (1, 1)), constant_values=-np.inf)
    out = (x.shape[2] - 3) // 2 + 1
    return np.stack([x[:, :, 2 * i:2 * i + 3].max(axis=2) for i in range(out)], axis=2)


def eqpolarity014_state(rng, dim=8, layers=2, tokens=16, outputs=2):
    """0.1.4's EQPolarityCCT state dict with its key names (its tokenizer: two conv k4 of `dim`
    channels; MLP dim -> dim -> dim); `outputs=2` as its published training scripts replace the output
    layer (nn.Linear(in_features, 2)), 1 as the class builds it."""
    tok = "tokenizer.conv_model"
    sd = {f"{tok}.0.weight": _randn(rng, dim, 1, 4), f"{tok}.0.bias": _randn(rng, dim, scale=0.1),
          f"{tok}.3.weight": _randn(rng, dim, dim, 4), f"{tok}.3.bias": _randn(rng, dim, scale=0.1)}
    for i in range(layers):
        b = f"transformer_blocks.{i}"
        for ln in ("layer_norm1", "layer_norm2"):
            sd[f"{b}.{ln}.weight"], sd[f"{b}.{ln}.bias"] = _randn(rng, dim, scale=0.2) + 1, _randn(rng, dim, scale=0.1)
        sd[f"{b}.attention.in_proj_weight"] = _randn(rng, 3 * dim, dim)
        sd[f"{b}.attention.in_proj_bias"] = _randn(rng, 3 * dim, scale=0.1)
        sd[f"{b}.attention.out_proj.weight"] = _randn(rng, dim, dim)
        sd[f"{b}.attention.out_proj.bias"] = _randn(rng, dim, scale=0.1)
        for j in (0, 3):
            sd[f"{b}.mlp.mlp.{j}.weight"], sd[f"{b}.mlp.mlp.{j}.bias"] = _randn(rng, dim, dim), _randn(rng, dim, scale=0.1)
    sd["layer_norm_final.weight"], sd["layer_norm_final.bias"] = _randn(rng, dim, scale=0.2) + 1, _randn(rng, dim, scale=0.1)
    sd["output_layer.weight"] = _randn(rng, outputs, tokens * dim)
    sd["output_layer.bias"] = _randn(rng, outputs, scale=0.1)
    return sd


def eqpolarity014_np(x, sd, heads=4):
    """0.1.4's EQPolarityCCT in eval mode, as probabilities (Up, Down): tokenizer (conv k4 pad 1 -> ReLU
    -> max-pool k3 s2 p1, twice), pre-norm transformer blocks (x + MHA(LN1 x); x + MLP(LN2 x), MLP =
    [Linear, GELU] x 2), final LayerNorm, flatten (token-major), output layer. Two outputs are logits
    (Up, Down); one output z is read as 0.1.4 trains it (BCE on its label 1 = down): P(down) = sigmoid(z)."""
    tok = "tokenizer.conv_model"
    h = x[:, None, :].astype(np.float64)
    for i in (0, 3):
        h = maxpool3s2p1_np(relu(conv1d_cf(h, np_(sd[f"{tok}.{i}.weight"]), np_(sd[f"{tok}.{i}.bias"]), (1, 1))))
    h = h.transpose(0, 2, 1)  # (N, tokens, dim)
    i = 0
    while f"transformer_blocks.{i}.layer_norm1.weight" in sd:
        b = f"transformer_blocks.{i}"
        h = h + mha_np(layer_norm_np(h, sd, f"{b}.layer_norm1"), sd, f"{b}.attention", heads)
        m = layer_norm_np(h, sd, f"{b}.layer_norm2")
        for j in (0, 3):
            m = gelu_np(m @ np_(sd[f"{b}.mlp.mlp.{j}.weight"]).T + np_(sd[f"{b}.mlp.mlp.{j}.bias"]))
        h, i = h + m, i + 1
    h = layer_norm_np(h, sd, "layer_norm_final").reshape(h.shape[0], -1)
    z = h @ np_(sd["output_layer.weight"]).T + np_(sd["output_layer.bias"])
    if z.shape[1] == 1:
        return np.concatenate([1 - sigmoid(z), sigmoid(z)], axis=1)
    return softmax(z)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _conv(rng, sd, prefix, cout, cin, k):
    sd[f"{prefix}.weight"], sd[f"{prefix}.bias"] = _randn(rng, cout, cin, k), _randn(rng, cout, scale=0.1)


def _linear(rng, sd, prefix, cout, cin):
    sd[f"{prefix}.weight"], sd[f"{prefix}.bias"] = _randn(rng, cout, cin), _randn(rng, cout, scale=0.1)


def conv_np(h, sd, prefix, pad):
    return conv1d_cf(h, np_(sd[f"{prefix}.weight"]), np_(sd[f"{prefix}.bias"]), pad)


def dense_np(h, sd, prefix):
    return h @ np_(sd[f"{prefix}.weight"]).T + np_(sd[f"{prefix}.bias"])


def polarcap014_state(rng):
    """0.1.4's PolarCAP with its key names: encoder Sequential (conv 0, BN 3, conv 5, BN 7), decoder
    Sequential (conv 0, BN 2, conv 4, BN 6, conv 8), classifier Sequential (Flatten, Linear 1, Softmax)."""
    sd = {}
    _conv(rng, sd, "encoder.0", 32, 1, 32)
    sd.update(_bn(rng, "encoder.3", 32))
    _conv(rng, sd, "encoder.5", 8, 32, 16)
    sd.update(_bn(rng, "encoder.7", 8))
    _conv(rng, sd, "decoder.0", 8, 8, 16)
    sd.update(_bn(rng, "decoder.2", 8))
    _conv(rng, sd, "decoder.4", 32, 8, 32)
    sd.update(_bn(rng, "decoder.6", 32))
    _conv(rng, sd, "decoder.8", 1, 32, 64)
    _linear(rng, sd, "classifier.1", 2, 128)
    return sd


def polarcap014_np(x, sd):
    """0.1.4's PolarCAP in eval mode: (its classifier's logits, its reconstruction). Every convolution
    pads k // 2 on both sides (k32: 64 -> 65, k16: 32 -> 33); conv -> ReLU -> (dropout) -> BN ->
    max-pool 2 (floor), twice; decoder: conv -> tanh -> BN -> upsample 2 -> conv -> ReLU -> BN ->
    upsample 2 -> conv -> tanh, cut to 64 samples."""
    h = x[:, None, :].astype(np.float64)
    h = maxpool_cf(bn_np(relu(conv_np(h, sd, "encoder.0", (16, 16))), sd, "encoder.3"))
    z = maxpool_cf(bn_np(relu(conv_np(h, sd, "encoder.5", (8, 8))), sd, "encoder.7"))
    logits = dense_np(z.reshape(z.shape[0], -1), sd, "classifier.1")
    d = np.repeat(bn_np(np.tanh(conv_np(z, sd, "decoder.0", (8, 8))), sd, "decoder.2"), 2, axis=2)
    d = np.repeat(bn_np(relu(conv_np(d, sd, "decoder.4", (16, 16))), sd, "decoder.6"), 2, axis=2)
    return logits, np.tanh(conv_np(d, sd, "decoder.8", (32, 32)))[:, :, :x.shape[1]]


RPNET_INCEPTIONS = ((64, (64, 64, 96, 16, 32, 32)), (224, (128, 128, 192, 32, 96, 64)))


def rpnet014_state(rng, steps=10, fc=8):
    """0.1.4's RPNet with its key names (initial_conv, inception{1,2}.branch{1..4}, lstm,
    self_attention, fc1, fc2); a window of 8 x `steps` samples, `fc` hidden units."""
    sd = {}
    _conv(rng, sd, "initial_conv.0", 64, 1, 3)
    for i, (cin, (c1, c3r, c3, c5r, c5, cp)) in enumerate(RPNET_INCEPTIONS, start=1):
        p = f"inception{i}"
        _conv(rng, sd, f"{p}.branch1", c1, cin, 1)
        _conv(rng, sd, f"{p}.branch2.0", c3r, cin, 1)
        _conv(rng, sd, f"{p}.branch2.1", c3, c3r, 3)
        _conv(rng, sd, f"{p}.branch3.0", c5r, cin, 1)
        _conv(rng, sd, f"{p}.branch3.1", c5, c5r, 5)
        _conv(rng, sd, f"{p}.branch4.1", cp, cin, 1)
    w = 480
    sd["lstm.weight_ih_l0"], sd["lstm.weight_hh_l0"] = _randn(rng, 4 * w, w), _randn(rng, 4 * w, w)
    sd["lstm.bias_ih_l0"], sd["lstm.bias_hh_l0"] = _randn(rng, 4 * w, scale=0.1), _randn(rng, 4 * w, scale=0.1)
    _linear(rng, sd, "self_attention.out_proj", w, w)
    sd["self_attention.in_proj_weight"], sd["self_attention.in_proj_bias"] = _randn(rng, 3 * w, w), _randn(rng, 3 * w, scale=0.1)
    _linear(rng, sd, "fc1", fc, steps * w)
    _linear(rng, sd, "fc2", 2, fc)
    return sd


def maxpool3s1p1_np(x):
    x = np.pad(x, ((0, 0), (0, 0), (1, 1)), constant_values=-np.inf)
    return np.maximum(np.maximum(x[:, :, :-2], x[:, :, 1:-1]), x[:, :, 2:])


def rpnet014_np(x, sd):
    """0.1.4's RPNet logits in eval mode: conv k3 stride 2 pad 1 -> ReLU -> max-pool 2; two inception
    modules whose branches have NO ReLU (1x1 | 1x1 -> k3 | 1x1 -> k5 | max-pool 3 -> 1x1); max-pool 2;
    LSTM; 8-head self-attention (its output alone); flatten -> fc1 -> ReLU -> (dropout) -> fc2."""
    h = maxpool_cf(relu(conv_np(x[:, None, :].astype(np.float64), sd, "initial_conv.0", (1, 1))[:, :, ::2]))
    for i in (1, 2):
        p = f"inception{i}"
        h = np.concatenate([conv_np(h, sd, f"{p}.branch1", (0, 0)),
                            conv_np(conv_np(h, sd, f"{p}.branch2.0", (0, 0)), sd, f"{p}.branch2.1", (1, 1)),
                            conv_np(conv_np(h, sd, f"{p}.branch3.0", (0, 0)), sd, f"{p}.branch3.1", (2, 2)),
                            conv_np(maxpool3s1p1_np(h), sd, f"{p}.branch4.1", (0, 0))], axis=1)
    seq = lstm_np(maxpool_cf(h).transpose(0, 2, 1), sd, "lstm")
    attn = mha_np(seq, sd, "self_attention", 8)
    return dense_np(relu(dense_np(attn.reshape(attn.shape[0], -1), sd, "fc1")), sd, "fc2")


def _comb014(rng, sd, prefix, cin, f=8):
    for b, k in enumerate((3, 3, 5, 5), start=1):
        _conv(rng, sd, f"{prefix}.branch{b}", f, cin, k)


def diting014_state(rng, length=64, f=8):
    """0.1.4's DitingMotion (input_channels=2) with its key names: b1_comb1/b1_conv1/b1_comb2/b1_conv2,
    block{2..5}.{comb1,fusion1,comb2,fusion2}, side{3,4,5}_conv, dense{3,4,5}(_c).0, out{3,4,5}(_c),
    fuse_dense(_c).0, out_fuse(_c); a window of `length` samples."""
    sd = {}
    _comb014(rng, sd, "b1_comb1", 2)
    _conv(rng, sd, "b1_conv1", f, 2 + 4 * f, 3)
    _comb014(rng, sd, "b1_comb2", f)
    _conv(rng, sd, "b1_conv2", f, 5 * f, 3)
    for b in range(2, 6):
        cin = 2 + (b - 1) * f
        _comb014(rng, sd, f"block{b}.comb1", cin)
        _conv(rng, sd, f"block{b}.fusion1", f, cin + 4 * f, 3)
        _comb014(rng, sd, f"block{b}.comb2", f)
        _conv(rng, sd, f"block{b}.fusion2", f, 5 * f, 3)
    for b, steps in ((3, length // 8), (4, length // 16), (5, length // 16)):
        _conv(rng, sd, f"side{b}_conv", 2, 2 + b * f, 3)
        for c in ("", "_c"):
            _linear(rng, sd, f"dense{b}{c}.0", 8, 2 * steps)
            _linear(rng, sd, f"out{b}{c}", 3, 8)
    for c in ("", "_c"):
        _linear(rng, sd, f"fuse_dense{c}.0", 8, 24)
        _linear(rng, sd, f"out_fuse{c}", 3, 8)
    return sd


def diting014_np(x, sd):
    """0.1.4's DiTingMotion fuse heads (polarity, clarity logits) in eval mode, on its training input:
    demean, divide by the (population) standard deviation, second channel the sign of x[i] - x[i-1]
    (a 0 first); five blocks of two [4 parallel convs (ReLU) + input -> conv k3 -> ReLU], the block
    input concatenated, max-pool 2 (not after block 5); side convs k3 -> ReLU -> flatten on blocks 3,
    4, 5 -> dense 8 -> ReLU; fuse: the three concatenated -> dense 8 -> ReLU -> output."""
    xd = x.astype(np.float64) - x.mean(axis=1, keepdims=True)
    xd = xd / (xd.std(axis=1, keepdims=True) + 1e-12)
    h = np.stack([xd, np.sign(np.diff(xd, axis=1, prepend=xd[:, :1]))], axis=1)

    def comb(a, prefix):
        return np.concatenate([relu(conv_np(a, sd, f"{prefix}.branch{b}", (k // 2, k // 2)))
                               for b, k in zip((1, 2, 3, 4), (3, 3, 5, 5))] + [a], axis=1)

    names = [("b1_comb1", "b1_conv1", "b1_comb2", "b1_conv2")] + [
        (f"block{b}.comb1", f"block{b}.fusion1", f"block{b}.comb2", f"block{b}.fusion2") for b in range(2, 6)]
    outs = []
    for b, (c1, f1, c2, f2) in enumerate(names, start=1):
        o = relu(conv_np(comb(h, c1), sd, f1, (1, 1)))
        o = relu(conv_np(comb(o, c2), sd, f2, (1, 1)))
        h = np.concatenate([h, o], axis=1)
        h = maxpool_cf(h) if b < 5 else h
        outs.append(h)
    fused = []
    for c in ("", "_c"):
        hidden = [relu(dense_np(relu(conv_np(outs[b - 1], sd, f"side{b}_conv", (1, 1))).reshape(len(x), -1), sd,
                                f"dense{b}{c}.0")) for b in (3, 4, 5)]
        fused.append(dense_np(relu(dense_np(np.concatenate(hidden, axis=1), sd, f"fuse_dense{c}.0")), sd, f"out_fuse{c}"))
    return fused[0], fused[1]


@pytest.mark.parametrize("name, length, options", [
    ("polarcap", 64, {"padding": "symmetric"}),
    ("rpnet", 80, {"branch_relu": False, "attention_residual": False}),
    ("diting_motion", 64, {"readout": "fuse", "difference": "backward", "scale": "std"}),
])
def test_seispolarity_014_polarcap_rpnet_diting_give_their_outputs(tmp_path, name, length, options):
    rng = np.random.default_rng(17)
    state = {"polarcap": polarcap014_state, "rpnet": rpnet014_state, "diting_motion": diting014_state}[name](rng)
    x = rng.normal(0, 1, (5, length)).cumsum(axis=1)
    x = (x / np.abs(x).max(axis=1, keepdims=True)).astype(np.float32)  # 0.1.4 peak-normalises
    src = tmp_path / f"{name.upper()}_SCSN.pth"
    torch.save({"state_dict": state}, src)
    out = tmp_path / f"{name}.ckpt"
    model_arg = {"diting_motion": "DitingMotion"}.get(name, name)
    assert pretrained_main(["import", "seispolarity-0.1.4", str(src), str(out), "--model", model_arg]) == 0
    described = load_checkpoint(out)["model"]
    assert described["input_length"] == length
    assert {k: described["init_kwargs"][k] for k in options} == options  # rebuilt the same way from the file
    predictor = Predictor(out, device="cpu")
    assert predictor.model.registry_name == name and predictor.normalize == "peak"
    probs = predictor.predict(x).probabilities.astype(np.float64)
    model = predictor.model
    xt = torch.from_numpy(x)[:, None]
    if name == "polarcap":
        logits, recon = polarcap014_np(x, state)
        with torch.no_grad():
            np.testing.assert_allclose(model.reconstruct(xt).double().numpy(), recon, rtol=0, atol=1e-5)
    elif name == "rpnet":
        logits = rpnet014_np(x, state)
    else:
        logits, clarity = diting014_np(x, state)
        np.testing.assert_allclose(model.clarity(xt).double().numpy(), softmax(clarity), rtol=0, atol=1e-5)
    expected = softmax(logits)
    assert np.abs(expected - expected.mean(axis=0)).max() > 2e-3  # the windows are told apart (> 100 x atol)
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["ross", "ppnet", "cfm"])
def test_seispolarity_014_checkpoints_give_their_outputs(tmp_path, name):
    rng = np.random.default_rng(5)
    state = {"ross": ross014_state, "ppnet": ppnet014_state, "cfm": cfm014_state}[name](rng)
    length = 160 if name == "cfm" else 400
    x = rng.normal(0, 1, (5, length)).cumsum(axis=1)
    x = (x / np.abs(x).max(axis=1, keepdims=True)).astype(np.float32)  # 0.1.4 peak-normalises
    src = tmp_path / f"{name.upper()}_SCSN.pth"
    wrapped = {"model_state_dict": {f"module.{k}": v for k, v in state.items()}} if name == "ross" else state
    torch.save(wrapped, src)
    out = tmp_path / f"{name}.ckpt"
    argv = ["import", "seispolarity-0.1.4", str(src), str(out), "--model", name]
    assert pretrained_main(argv) == 0
    predictor = Predictor(out, device="cpu")
    assert predictor.model.registry_name == name and predictor.normalize == "peak"
    probs = predictor.predict(x).probabilities.astype(np.float64)
    if name == "cfm":
        np.testing.assert_allclose(probs[:, 1], cfm014_np(x, state), rtol=0, atol=2e-6)
    else:
        expected = softmax((ross014_np if name == "ross" else ppnet014_np)(x, state))
        np.testing.assert_allclose(probs, expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("outputs", [2, 1])
def test_seispolarity_014_eqpolarity_gives_its_outputs(tmp_path, outputs):
    rng = np.random.default_rng(11)
    state = eqpolarity014_state(rng, outputs=outputs)  # 16 tokens of 8: a 64-sample window
    x = rng.normal(0, 1, (6, 64)).cumsum(axis=1)
    x = (x / np.abs(x).max(axis=1, keepdims=True)).astype(np.float32)
    src = tmp_path / "EQPOLARITY_SCSN.pth"
    torch.save(state, src)
    out = tmp_path / "eqpolarity.ckpt"
    assert pretrained_main(["import", "seispolarity-0.1.4", str(src), str(out), "--model", "EQPolarityCCT"]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["model"]["input_length"] == 64 and ckpt["model"]["init_kwargs"]["transformer_layers"] == 2
    predictor = Predictor(out, device="cpu")
    assert predictor.model.registry_name == "eqpolarity" and predictor.normalize == "peak"
    probs = predictor.predict(x).probabilities.astype(np.float64)
    expected = eqpolarity014_np(x, state)
    assert np.abs(expected[:, 0] - 0.5).max() > 0.05  # not a trivially flat check
    np.testing.assert_allclose(probs, expected, rtol=0, atol=2e-6)


def test_seispolarity_014_eqpolarity_with_another_mlp_is_refused(tmp_path):
    state = eqpolarity014_state(np.random.default_rng(0))
    state["transformer_blocks.1.mlp.mlp.0.weight"] = torch.zeros(16, 8)
    src = tmp_path / "eq.pth"
    torch.save(state, src)
    with pytest.raises(ValueError, match=r"not a 0\.1\.4 eqpolarity state dict: block 1's MLP is \[\(16, 8\), \(8, 8\)\]"):
        import_seispolarity014(src, tmp_path / "o.ckpt", "eqpolarity")


def test_seispolarity_014_unknown_model_is_one_clear_error(tmp_path, capsys):
    src = tmp_path / "M.pth"
    torch.save({"encoder.0.weight": torch.zeros(32, 1, 32)}, src)
    assert pretrained_main(["import", "seispolarity-0.1.4", str(src), str(tmp_path / "o.ckpt"), "--model", "phasenet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected one of ppnet, ross, cfm, eqpolarity, polarcap, rpnet, diting_motion" in err[0]
    assert not (tmp_path / "o.ckpt").exists()


def test_0_1_4_options_keep_the_layers_and_their_defaults_the_old_models():
    """The 0.1.4-compatible options change no parameter (same keys and shapes, so the importer's
    mapping holds for either); at their defaults the models are what they were: Keras-'same' PolarCAP
    padding, ReLUs in RPNet's inception branches, DiTingMotion's mean of the four heads and a forward
    difference (0 last), peak scaling."""
    from seispolarity.models import DiTingMotion, PolarCAP, RPNet, get_model
    from seispolarity.models.diting_motion import _log_mean_softmax

    for cls, compat in ((PolarCAP, {"padding": "symmetric"}), (RPNet, {"branch_relu": False}),
                        (DiTingMotion, {"readout": "fuse", "difference": "backward", "scale": "std"})):
        a, b = cls(), cls(**compat)
        assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
        assert all(a.init_kwargs.get(k) is None for k in compat)  # defaults are not written into descriptions
    torch.manual_seed(0)
    x = torch.randn(4, 1, 400).cumsum(-1)
    polarcap = get_model("polarcap").eval()
    assert polarcap.padding == "same" and polarcap.encoder[0][0].padding == (15, 16)
    assert polarcap.encoder[5][0].padding == (7, 8) and polarcap.classifier[1].in_features == 8 * 16
    rpnet = get_model("rpnet", input_length=64).eval()
    assert rpnet.branch_relu and all(isinstance(m[-1], torch.nn.ReLU) for inc in rpnet.inception[:2]
                                     for m in (inc.b1, inc.b3, inc.b5, inc.bp))
    diting = get_model("diting_motion").eval()
    assert (diting.readout, diting.difference, diting.scale) == ("mean", "forward", "peak")
    with torch.no_grad():
        two = diting.two_channel_input(x[:, :, :128])
        ref = x[:, :, :128] - x[:, :, :128].mean(-1, keepdim=True)
        ref = ref / ref.abs().amax(-1, keepdim=True)
        assert torch.equal(two[:, 0], ref[:, 0]) and torch.equal(two[:, 1, -1], torch.zeros(4))
        assert torch.equal(two[:, 1, :-1], torch.sign(ref[:, 0, 1:] - ref[:, 0, :-1]))
        pol, cla = diting._heads(x)
        assert torch.equal(diting.classify(x), _log_mean_softmax(pol))
        assert torch.equal(diting.clarity(x), _log_mean_softmax(cla).exp())


@pytest.mark.parametrize("cls, kwargs, says", [
    ("PolarCAP", {"padding": "valid"}, "PolarCAP padding must be one of same, symmetric, got 'valid'"),
    ("RPNet", {"branch_relu": "no"}, "RPNet branch_relu must be true or false, got 'no'"),
    ("DiTingMotion", {"readout": "max"}, "DiTingMotion readout must be one of mean, fuse, got 'max'"),
    ("DiTingMotion", {"difference": "central"}, "DiTingMotion difference must be one of forward, backward"),
    ("DiTingMotion", {"scale": "rms"}, "DiTingMotion scale must be one of peak, std, got 'rms'"),
])
def test_0_1_4_options_are_checked(cls, kwargs, says):
    import seispolarity.models as models

    with pytest.raises(ValueError, match=re.escape(says)) as info:
        getattr(models, cls)(**kwargs)
    assert "\n" not in str(info.value)


def test_seispolarity_014_wrong_keys_are_one_clear_error(tmp_path):
    src = tmp_path / "POLARCAP_SCSN.pth"
    torch.save({"encoder.0.weight": torch.zeros(32, 1, 32)}, src)
    with pytest.raises(ValueError, match=r"not a 0\.1\.4 ppnet state dict: missing key encoder_block1\.0\.weight"):
        import_seispolarity014(src, tmp_path / "o.ckpt", "ppnet")


def test_an_imported_checkpoint_is_evaluated_and_fine_tuned_by_the_runner(tmp_path, cache_dir):
    from conftest import explain, run_cli, run_folder, tiny_overrides

    ckpt = tmp_path / "cfm.ckpt"
    import_cfm_keras([write_keras2_model(tmp_path / "CFM.hdf5", cfm_weights(2))], ckpt)
    common = [o for o in tiny_overrides() if not o.startswith("model.")] + [
        f"paths.log_dir={tmp_path / 'logs'}", f"paths.cache_dir={cache_dir}"]
    proc = run_cli([*common, "train=false", f"ckpt_path={ckpt}"], timeout=600)  # no model=cfm: the checkpoint's model
    assert proc.returncode == 0, explain(proc)
    run = run_folder(proc.stdout)
    cfg = json.loads(json.dumps(__import__("yaml").safe_load((run / "config.yaml").read_text())))
    assert cfg["model"]["_target_"] == "seispolarity.models.cfm.CFM" and cfg["model"]["fc_activation"] == "softsign"
    assert cfg["data"]["normalize"] == "cfm"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["excluded_unknown"] == 0 and metrics["data"]["unknown"] == "drop"  # a two-class model
    proc = run_cli([*common, f"init_from={ckpt}", "trainer.freeze=features"], timeout=600)
    assert proc.returncode == 0, explain(proc)
    tuned = load_checkpoint(run_folder(proc.stdout) / "checkpoints" / "last.ckpt")
    before = load_checkpoint(ckpt)["model_state_dict"]
    assert tuned["epoch"] == 1 and tuned["data"]["normalize"] == "cfm"
    assert all(torch.equal(v, tuned["model_state_dict"][k]) for k, v in before.items() if k.startswith("features."))


def test_seispolarity_014_usage_lists_every_mapped_model(tmp_path, capsys):
    """The usage line, --help and the README list the importer's own MODELS, not a copy of them."""
    from seispolarity.pretrained.seispolarity014 import MODELS

    with pytest.raises(SystemExit) as info:
        pretrained_main(["import", "seispolarity-0.1.4", str(tmp_path / "M.pth"), str(tmp_path / "o.ckpt")])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: import seispolarity-0.1.4 takes one .pth, the output and --model {'|'.join(MODELS)}"]
    with pytest.raises(SystemExit):
        pretrained_main(["import", "--help"])
    assert ", ".join(MODELS) in " ".join(capsys.readouterr().out.split())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"(--model {'|'.join(MODELS)})" in readme


@pytest.mark.parametrize("kind", ["text", "HDF5"])
def test_seispolarity_014_a_file_that_is_not_a_pth_says_what_it_is(tmp_path, capsys, kind):
    src = tmp_path / "model.pth"
    if kind == "text":
        src.write_text("PPNet weights: see the release page\n")
        looks = "a text file"
    else:
        with h5py.File(src, "w") as f:
            f.create_dataset("X", data=np.zeros((2, 8), np.float32))
        looks = "an HDF5 file; the CFM authors' Keras .hdf5 files import with: import cfm-keras"
    argv = ["import", "seispolarity-0.1.4", str(src), str(tmp_path / "o.ckpt"), "--model", "ppnet"]
    assert pretrained_main(argv) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {src}: not a loadable .pth state dict (a torch .pth file saved by SeisPolarity 0.1.4 was expected; "
        f"this looks like {looks})"]
    assert not (tmp_path / "o.ckpt").exists()
