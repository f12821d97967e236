"""Import SeisPolarity 0.1.4 checkpoints (``.pth``) for the models both projects have.

    python -m seispolarity.pretrained import seispolarity-0.1.4 APP_GLOBAL.pth ppnet.ckpt --model ppnet

0.1.4 saves a plain ``state_dict`` (or a dict holding it under ``state_dict`` / ``model_state_dict``,
keys possibly prefixed ``module.``). Its key names are mapped onto ours; the layer sizes are read
from the tensors' shapes, so a checkpoint of a narrower or wider variant imports too. Mapped:

- ``ppnet`` (0.1.4 ``PPNet``, its APP_* files): ``encoder_block{1,2,3}.{0,3}`` -> ``encoder.{0,1,2}.{0,3}``,
  ``decoder_block{1,2,3}.{1,3}`` -> ``decoder.{0,1,2}.{1,3}``, ``out1_conv`` -> ``mask_out``, ``lstm``
  and ``attention`` unchanged, ``dense`` -> ``classifier.2``, ``out2_dense`` -> ``classifier.4``. Its
  classifier reads the attention output itself, so ``attention_residual=False``; 4 attention heads
  (its default; the head count is not in a state dict).
- ``ross`` (0.1.4 ``SCSN``, its ROSS_* files): ``shared_backbone.sequential.{0,1,4,5,8,9}`` ->
  ``features.{0,1,4,5,8,9}``, ``.13``/``.14`` -> ``fc.1``/``fc.2``, ``.16``/``.17`` -> ``fc.5``/``fc.6``,
  ``fm_head`` -> ``head``.
- ``cfm`` (0.1.4 ``CFM``): ``conv1..conv5`` -> ``features.{0,3,6,9,12}``, ``fc1`` -> ``classifier.0``
  (ReLU after it, as in its forward); its one output ``fc2`` (``z``) -> logits ``(0, z)`` in
  ``classifier.2``, so P(down) = ``sigmoid(z)``: 0.1.4 trains its one-output models with
  ``BCEWithLogitsLoss`` on its labels (0 up, 1 down; its CFM_* training scripts do), so ``sigmoid(z)``
  is the probability of label 1, down, and its ``Predictor`` reads it as ``[1 - s, s]`` over
  (Up, Down). (Its ``CFM.build_picks`` says the opposite, up when ``sigmoid(z) > 0.5``, the Keras
  authors' convention; weights trained by 0.1.4 do not follow it.)
- ``eqpolarity`` (0.1.4 ``EQPolarityCCT``): ``tokenizer.conv_model.{0,3}`` -> ``tokenizer.{0,3}``,
  ``transformer_blocks.<i>.{layer_norm1,attention,layer_norm2,mlp.mlp.{0,3}}`` ->
  ``blocks.<i>.{norm1,attn,norm2,mlp.{0,3}}``, ``layer_norm_final`` -> ``norm``, ``output_layer`` ->
  ``head``. Its output layer comes in two forms: two logits (Up, Down), as its published
  EQPOLARITY_* training scripts replace it (``nn.Linear(in_features, 2)``, cross-entropy), mapped onto
  our single score as ``z = l_up - l_down`` (softmax of ``(z/2, -z/2)`` equals softmax of
  ``(l_up, l_down)``); or the class's own one output ``z'`` (BCE, ``sigmoid(z')`` = P(down), as for
  CFM), mapped as ``z = -z'``. Three or more outputs map onto an ordinary head of as many classes.
  Token width, block count and window (4 x tokens) come from the shapes; 4 attention heads (its
  default; not in a state dict).

- ``polarcap`` (0.1.4 ``PolarCAP``): built as ``PolarCAP(padding="symmetric")`` (0.1.4 pads its
  even kernels k/2 on both sides, 65 and 33 samples before the max-pools); ``encoder.{0,5}`` ->
  ``encoder.{0,5}.1``, ``encoder.{3,7}`` unchanged, ``decoder.{0,2,4,6,8}`` -> ``dec1.0.1``,
  ``dec1.2``, ``dec2.0.1``, ``dec2.2``, ``dec3.0.1``, ``classifier.1`` unchanged (its softmax is ours).
- ``rpnet`` (0.1.4 ``RPNet``): built as ``RPNet(branch_relu=False, attention_residual=False)`` (no
  ReLU inside its inception branches; its classifier reads the attention output); ``initial_conv.0``
  -> ``stem.0``, ``inception{1,2}.branch{1, 2.0, 2.1, 3.0, 3.1, 4.1}`` -> ``inception.{0,1}.{b1.0,
  b3.0, b3.2, b5.0, b5.2, bp.1}``, ``self_attention`` -> ``attention``, ``fc1`` -> ``fc.1``, ``fc2``
  -> ``out``; 8 heads.
- ``diting_motion`` (0.1.4 ``DitingMotion``): built as ``DiTingMotion(readout="fuse",
  difference="backward", scale="std", dropout=0.15)`` (0.1.4 predicts from the fuse head alone, its
  second input channel is ``sign(x[i] - x[i-1])``, 0 first, and its training standardises the
  trace); ``b1_*`` and ``block{2..5}.{comb1,fusion1,comb2,fusion2}`` -> ``blocks.{0..4}.stages.{0,2,4,6}``,
  ``side{3,4,5}_conv`` -> ``side_convs.{0,1,2}``, ``dense{b}(_c).0`` / ``out{b}(_c)`` ->
  ``{polarity,clarity}_sides.<i>.{hidden.0,out}``, ``fuse_dense(_c).0`` / ``out_fuse(_c)`` ->
  ``{polarity,clarity}_fuse.{hidden.0,out}``.

The options are in the checkpoint's model description, so ``Predictor``, ``train=false`` and
``init_from`` rebuild the same model. Class order is 0 up, 1 down (2 unknown) in both projects.
The checkpoint records ``normalize="peak"`` (0.1.4's
Predictor divides each window by its peak) and the model's window, P at the centre.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable

import torch

MODELS = ("ppnet", "ross", "cfm", "eqpolarity", "polarcap", "rpnet", "diting_motion")
#: models of 0.1.4 that cannot be mapped, with the reason (none at present)
NOT_MAPPED: dict[str, str] = {}

#: what ``import seispolarity-0.1.4`` reads
EXPECTED = "a torch .pth file saved by SeisPolarity 0.1.4 was expected"

#: 0.1.4's class names for them
ALIASES = {"app": "ppnet", "scsn": "ross", "eqpolaritycct": "eqpolarity", "diting": "diting_motion",
           "ditingmotion": "diting_motion"}


def _rename(state: dict[str, torch.Tensor], rules: list[tuple[str, str | Callable]]) -> dict[str, torch.Tensor]:
    out, unmapped = {}, []
    for key, value in state.items():
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise ValueError(f"keys that 0.1.4's model does not have: {unmapped[:5]}")
    return out


def _ppnet(state: dict[str, torch.Tensor]):
    from ..models import PPNet

    conv = state["encoder_block1.0.weight"]
    base, kernel = int(conv.shape[0]), int(conv.shape[2])
    widths = [int(state[f"encoder_block{i}.0.weight"].shape[0]) for i in (1, 2, 3)]
    if widths != [base, 2 * base, 4 * base]:
        raise ValueError(f"encoder widths {widths}; ours are base x (1, 2, 4)")
    units = int(state["lstm.weight_hh_l0"].shape[1])
    dense = state["dense.weight"]
    model = PPNet(num_classes=int(state["out2_dense.weight"].shape[0]), input_length=int(dense.shape[1]) // units * 8,
                  base_channels=base, kernel_size=kernel, lstm_units=units, attention_heads=4,
                  num_dense=int(dense.shape[0]), attention_residual=False)
    rules = [(r"^encoder_block([123])\.([03])\.", lambda m: f"encoder.{int(m.group(1)) - 1}.{m.group(2)}."),
             (r"^decoder_block([123])\.([13])\.", lambda m: f"decoder.{int(m.group(1)) - 1}.{m.group(2)}."),
             (r"^out1_conv\.", "mask_out."), (r"^(lstm|attention)\.", r"\1."),
             (r"^dense\.", "classifier.2."), (r"^out2_dense\.", "classifier.4.")]
    return model, _rename(state, rules)


def _ross(state: dict[str, torch.Tensor]):
    from ..models import Ross

    seq = "shared_backbone.sequential"
    base = int(state[f"{seq}.0.weight"].shape[0])
    kernels = [int(state[f"{seq}.{i}.weight"].shape[2]) for i in (0, 4, 8)]
    fc = state[f"{seq}.13.weight"]
    model = Ross(num_classes=int(state["fm_head.weight"].shape[0]), input_length=int(fc.shape[1]) // (4 * base) * 8,
                 base_channels=base, kernel_sizes=kernels, fc_units=int(fc.shape[0]))
    fc_index = {"13": "1", "14": "2", "16": "5", "17": "6"}
    rules = [(rf"^{seq}\.([014589])\.", r"features.\1."),
             (rf"^{seq}\.(13|14|16|17)\.", lambda m: f"fc.{fc_index[m.group(1)]}."), (r"^fm_head\.", "head.")]
    return model, _rename(state, rules)


def _cfm(state: dict[str, torch.Tensor]):
    from ..models import CFM

    base = int(state["conv1.weight"].shape[0])
    fc1 = state["fc1.weight"]
    steps = int(fc1.shape[1]) // (4 * base)
    if tuple(state["fc2.weight"].shape) != (1, fc1.shape[0]):
        raise ValueError(f"fc2.weight has shape {tuple(state['fc2.weight'].shape)}; 0.1.4's CFM has one output")
    from .keras_cfm import _input_length

    model = CFM(num_classes=2, input_length=_input_length([], steps), base_channels=base, fc_units=int(fc1.shape[0]))
    rules = [(r"^conv([1-5])\.", lambda m: f"features.{3 * (int(m.group(1)) - 1)}."), (r"^fc1\.", "classifier.0.")]
    fc2_w, fc2_b = state.pop("fc2.weight"), state.pop("fc2.bias")
    out = _rename(state, rules)
    # logits (0, z): softmax[1] = sigmoid(z) = P(down), 0.1.4's BCE target being its label 1 (down)
    out["classifier.2.weight"] = torch.cat([torch.zeros_like(fc2_w), fc2_w])
    out["classifier.2.bias"] = torch.cat([torch.zeros_like(fc2_b), fc2_b])
    return model, out


def _eqpolarity(state: dict[str, torch.Tensor]):
    from ..models import EQPolarity

    tok = "tokenizer.conv_model"
    conv1, conv2 = state[f"{tok}.0.weight"], state[f"{tok}.3.weight"]
    dim = int(conv1.shape[0])
    if tuple(conv1.shape) != (dim, 1, 4) or tuple(conv2.shape) != (dim, dim, 4):
        raise ValueError(f"tokenizer convolutions {tuple(conv1.shape)}, {tuple(conv2.shape)}; ours are "
                         f"(D, 1, 4) and (D, D, 4)")
    layers = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"^transformer_blocks\.(\d+)\.", k))),
                     default=-1)
    for i in range(layers):
        mlp = sorted(k for k in state if k.startswith(f"transformer_blocks.{i}.mlp.mlp.") and k.endswith("weight"))
        shapes = [tuple(state[k].shape) for k in mlp]
        if mlp != [f"transformer_blocks.{i}.mlp.mlp.{j}.weight" for j in (0, 3)] or shapes != [(dim, dim)] * 2:
            raise ValueError(f"block {i}'s MLP is {shapes}; ours is two layers of {dim} ({dim} x {dim})")
    out_w, out_b = state.pop("output_layer.weight"), state.pop("output_layer.bias")
    outputs, flat = int(out_w.shape[0]), int(out_w.shape[1])
    if flat % dim:
        raise ValueError(f"output_layer takes {flat} features, not a whole number of {dim}-wide tokens")
    model = EQPolarity(num_classes=2 if outputs <= 2 else outputs, input_length=4 * (flat // dim),
                       projection_dim=dim, num_heads=4, transformer_layers=layers)
    rules = [(rf"^{tok}\.([03])\.", r"tokenizer.\1."),
             (r"^transformer_blocks\.(\d+)\.layer_norm([12])\.", r"blocks.\1.norm\2."),
             (r"^transformer_blocks\.(\d+)\.attention\.", r"blocks.\1.attn."),
             (r"^transformer_blocks\.(\d+)\.mlp\.mlp\.([03])\.", r"blocks.\1.mlp.\2."),
             (r"^layer_norm_final\.", "norm.")]
    out = _rename(state, rules)
    if outputs == 1:  # sigmoid(z') = P(down) (0.1.4's BCE on label 1 = down); ours: sigmoid(z) = P(up)
        out["head.weight"], out["head.bias"] = -out_w, -out_b
    elif outputs == 2:  # logits (up, down): softmax[0] = sigmoid(l_up - l_down)
        out["head.weight"], out["head.bias"] = (out_w[0] - out_w[1])[None], (out_b[0] - out_b[1])[None]
    else:
        out["head.weight"], out["head.bias"] = out_w, out_b
    return model, out


def _polarcap(state: dict[str, torch.Tensor]):
    from ..models import PolarCAP

    out_w = state["classifier.1.weight"]
    if int(out_w.shape[1]) % 8:
        raise ValueError(f"classifier.1 takes {int(out_w.shape[1])} features, not 8 bottleneck channels x steps")
    model = PolarCAP(num_classes=int(out_w.shape[0]), input_length=4 * (int(out_w.shape[1]) // 8), padding="symmetric")
    names = {"encoder.0": "encoder.0.1", "encoder.3": "encoder.3", "encoder.5": "encoder.5.1", "encoder.7": "encoder.7",
             "decoder.0": "dec1.0.1", "decoder.2": "dec1.2", "decoder.4": "dec2.0.1", "decoder.6": "dec2.2",
             "decoder.8": "dec3.0.1", "classifier.1": "classifier.1"}
    rules = [(rf"^{re.escape(old)}\.", f"{new}.") for old, new in names.items()]
    return model, _rename(state, rules)


def _rpnet(state: dict[str, torch.Tensor]):
    from ..models import RPNet

    fc1, width = state["fc1.weight"], int(state["lstm.weight_hh_l0"].shape[1])
    if int(fc1.shape[1]) % width:
        raise ValueError(f"fc1 takes {int(fc1.shape[1])} features, not a whole number of {width}-wide steps")
    model = RPNet(num_classes=int(state["fc2.weight"].shape[0]), input_length=8 * (int(fc1.shape[1]) // width),
                  attention_heads=8, fc_units=int(fc1.shape[0]), attention_residual=False, branch_relu=False)
    branch = {"branch1.": "b1.0.", "branch2.0.": "b3.0.", "branch2.1.": "b3.2.", "branch3.0.": "b5.0.",
              "branch3.1.": "b5.2.", "branch4.1.": "bp.1."}
    rules = [(r"^initial_conv\.0\.", "stem.0."), (r"^self_attention\.", "attention."), (r"^lstm\.", "lstm."),
             (r"^fc1\.", "fc.1."), (r"^fc2\.", "out."),
             (r"^inception([12])\.(branch1\.|branch[23]\.[01]\.|branch4\.1\.)",
              lambda m: f"inception.{int(m.group(1)) - 1}.{branch[m.group(2)]}")]
    return model, _rename(state, rules)


def _diting_rules() -> list[tuple[str, str]]:
    stages = [("b1_comb1", "b1_conv1", "b1_comb2", "b1_conv2")] + [
        (f"block{b}.comb1", f"block{b}.fusion1", f"block{b}.comb2", f"block{b}.fusion2") for b in range(2, 6)]
    rules = []
    for s, (comb1, conv1, comb2, conv2) in enumerate(stages):
        for j, comb in ((0, comb1), (4, comb2)):
            rules += [(f"{comb}.branch{b + 1}.", f"blocks.{s}.stages.{j}.branches.{b}.") for b in range(4)]
        rules += [(f"{conv1}.", f"blocks.{s}.stages.2."), (f"{conv2}.", f"blocks.{s}.stages.6.")]
    for i, b in enumerate((3, 4, 5)):
        rules += [(f"side{b}_conv.", f"side_convs.{i}."), (f"dense{b}_c.0.", f"clarity_sides.{i}.hidden.0."),
                  (f"out{b}_c.", f"clarity_sides.{i}.out."), (f"dense{b}.0.", f"polarity_sides.{i}.hidden.0."),
                  (f"out{b}.", f"polarity_sides.{i}.out.")]
    rules += [("fuse_dense_c.0.", "clarity_fuse.hidden.0."), ("out_fuse_c.", "clarity_fuse.out."),
              ("fuse_dense.0.", "polarity_fuse.hidden.0."), ("out_fuse.", "polarity_fuse.out.")]
    return [("^" + re.escape(old), new) for old, new in rules]


def _diting(state: dict[str, torch.Tensor]):
    from ..models import DiTingMotion

    side, dense = state["side3_conv.weight"], state["dense3.0.weight"]
    channels = int(side.shape[0])
    if int(dense.shape[1]) % channels:
        raise ValueError(f"dense3 takes {int(dense.shape[1])} features, not a whole number of {channels} channels")
    model = DiTingMotion(num_classes=int(state["out_fuse.weight"].shape[0]),
                         input_length=8 * (int(dense.shape[1]) // channels),
                         filters=int(state["b1_comb1.branch1.weight"].shape[0]), dropout=0.15,
                         num_clarity_classes=int(state["out_fuse_c.weight"].shape[0]), side_channels=channels,
                         hidden_units=int(dense.shape[0]), readout="fuse", difference="backward", scale="std")
    return model, _rename(state, _diting_rules())


BUILDERS = {"ppnet": _ppnet, "ross": _ross, "cfm": _cfm, "eqpolarity": _eqpolarity, "polarcap": _polarcap,
            "rpnet": _rpnet, "diting_motion": _diting}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a 0.1.4 ``.pth`` (plain, or under ``state_dict`` / ``model_state_dict``),
    loaded with ``weights_only=True``, without a ``module.`` prefix."""
    from ..training.checkpoint import file_kind, load_failure

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: " + ("a folder, not a .pth file" if os.path.isdir(path) else "no such file"))
    kind = file_kind(path)  # a text or HDF5 file: say so, not torch's "Unsupported operand 72"
    if kind is not None:
        keras = "; the CFM authors' Keras .hdf5 files import with: import cfm-keras" if "HDF5" in kind else ""
        raise ValueError(f"{path}: not a loadable .pth state dict ({EXPECTED}; this looks like {kind}{keras})")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure: not a loadable state dict
        raise ValueError(f"{path}: not a loadable .pth state dict ({load_failure(path, exc, EXPECTED)})") from None
    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not all(torch.is_tensor(v) for v in loaded.values()):
        raise ValueError(f"{path}: not a state dict (a dict of tensors)")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in loaded.items()}


def import_seispolarity014(path: str | os.PathLike, out: str | os.PathLike, model: str) -> dict[str, Any]:
    """Map a 0.1.4 checkpoint of ``model`` onto ours and write ``out``; returns the checkpoint."""
    from ..training.checkpoint import save_checkpoint
    from .imported import imported_state

    key = model.lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key in NOT_MAPPED:
        raise ValueError(f"--model {model}: not importable from 0.1.4: {NOT_MAPPED[key]}; mapped models: "
                         f"{', '.join(MODELS)}")
    if key not in BUILDERS:
        raise ValueError(f"--model {model}: expected one of {', '.join(MODELS)}")
    state = read_state_dict(path)
    try:
        ours, mapped = BUILDERS[key](dict(state))
        ours.load_state_dict(mapped)
    except (KeyError, ValueError, RuntimeError) as exc:
        text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        detail = ([ln.strip() for ln in text.splitlines()[1:] if ln.strip()] or text.splitlines() or [""])[0]
        missing = f"missing key {text}" if isinstance(exc, KeyError) else detail
        raise ValueError(f"{os.fspath(path)}: not a 0.1.4 {key} state dict: {missing[:300]}") from None
    ours.eval()
    result = imported_state(ours, normalize="peak", files=[path],
                            source={"format": "seispolarity-0.1.4", "model": key},
                            notes="0.1.4 state-dict keys mapped onto ours; window centred on P, peak-normalised")
    save_checkpoint(result, out)
    return result


__all__ = ["import_seispolarity014", "read_state_dict", "MODELS"]
