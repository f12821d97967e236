"""Predictor and `python -m seispolarity.predict`: same numbers as Trainer.evaluate, every input kind."""
from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import cli_env, explain, ramp_traces, write_scsn_file
from seispolarity.data.dataset import WaveformDataset
from seispolarity.data.synthetic import generate_synthetic
from seispolarity.inference import PredictionResult, Predictor
from seispolarity.models import Ross, RPNet
from seispolarity.training import CheckpointError, Trainer, TrainingConfig

ROOT = Path(__file__).resolve().parents[1]


def _config(folder: Path, **kw) -> TrainingConfig:
    values = dict(epochs=1, batch_size=32, num_workers=0, device="cpu", save_dir=str(folder), validation_split=0.2,
                  show_progress=False, max_steps_per_epoch=3, seed=3, log_every=1000)
    values.update(kw)
    return TrainingConfig(**values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Ross trained for 3 steps on a small synthetic file: (file, checkpoint, trainer)."""
    folder = tmp_path_factory.mktemp("inference")
    data = generate_synthetic(folder / "synthetic.hdf5", num_traces=96, seed=5)
    torch.manual_seed(0)
    model = Ross(num_classes=3, base_channels=4, fc_units=16)
    dataset = WaveformDataset(data, name="synthetic", preload=True, window_length=400, max_shift=5)
    trainer = Trainer(model=model, dataset=dataset, config=_config(folder / "ckpt"))
    trainer.train()
    ckpt = folder / "ckpt" / "last.ckpt"
    assert ckpt.is_file()
    return data, ckpt, trainer


def test_predictor_matches_trainer_evaluate(trained):
    data, ckpt, trainer = trained
    # the Trainer scores a dataset with a time-shift margin; the Predictor reads the file itself
    dataset = WaveformDataset(data, name="synthetic", preload=True, window_length=400, max_shift=5)
    ev = trainer.evaluate(dataset, return_predictions=True, batch_size=16)
    predictor = Predictor(ckpt, device="cpu", batch_size=16)
    for result in (predictor.predict(str(data), name="synthetic"), predictor.predict_dataset(dataset)):
        assert isinstance(result, PredictionResult) and len(result) == len(dataset) == 96
        np.testing.assert_array_equal(result.indices, ev["indices"])
        np.testing.assert_array_equal(result.labels, ev["labels"])
        np.testing.assert_array_equal(result.predictions, ev["predictions"])
        np.testing.assert_allclose(result.probabilities, ev["probabilities"], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(result.probability, ev["probabilities"].max(axis=1))
    # metadata of the data set travels with the predictions
    assert set(result.metadata) >= {"event_id", "snr", "magnitude", "distance"}
    # the model, window and normalisation come from the checkpoint alone
    assert predictor.model.registry_name == "ross" and predictor.input_length == 400
    assert predictor.normalize == "peak" and predictor.label_map == {"0": 0, "1": 1, "2": 2}


def test_numpy_arrays_give_the_same_answer_as_the_file(trained):
    data, ckpt, _ = trained
    predictor = Predictor(ckpt, device="cpu", batch_size=40)
    from_file = predictor.predict(str(data), name="synthetic")
    with h5py.File(data, "r") as f:
        x, p = f["X"][()], f["p_pick"][()]
    for waveforms in (x, x[:, None, :]):  # (N, L) and (N, C, L); P at given samples
        result = predictor.predict(waveforms, p_index=p)
        np.testing.assert_array_equal(result.predictions, from_file.predictions)
        np.testing.assert_allclose(result.probabilities, from_file.probabilities, atol=1e-6)
    # windows already cut around P: P at the centre by default
    centred = np.stack([x[i, p[i] - 200:p[i] + 200] for i in range(len(x))])
    np.testing.assert_allclose(predictor.predict(centred).probabilities, from_file.probabilities, atol=1e-6)
    # one trace
    single = predictor.predict(x[3], p_index=int(p[3]))
    np.testing.assert_allclose(single.probabilities[0], from_file.probabilities[3], atol=1e-6)
    with pytest.raises(ValueError, match="p_index has"):
        predictor.predict(x, p_index=p[:5])
    with pytest.raises(ValueError, match="channel"):
        predictor.predict(np.zeros((2, 3, 400), np.float32))


def test_threshold_abstains_and_csv(trained, tmp_path):
    data, ckpt, _ = trained
    plain = Predictor(ckpt, device="cpu").predict(str(data), name="synthetic")
    threshold = float(np.median(plain.probability))
    result = Predictor(ckpt, device="cpu", threshold=threshold).predict(str(data), name="synthetic")
    expected = np.where(plain.probability >= threshold, plain.raw_predictions, 2)
    np.testing.assert_array_equal(result.predictions, expected)
    assert (result.predictions == 2).sum() >= len(result) // 2 - 1
    np.testing.assert_array_equal(result.raw_predictions, plain.raw_predictions)
    path = result.to_csv(tmp_path / "out" / "picks.csv")
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(result)
    assert list(rows[0])[:2] == ["index", "event_id"]
    for key in ("prediction", "polarity", "probability", "p_up", "p_down", "p_unknown", "label", "snr"):
        assert key in rows[0]
    for i in (0, 17, 95):
        assert int(rows[i]["prediction"]) == result.predictions[i]
        assert rows[i]["polarity"] == "UDX"[result.predictions[i]]
        assert float(rows[i]["p_down"]) == pytest.approx(result.probabilities[i, 1], abs=1e-6)
    with pytest.raises(ValueError, match="threshold"):
        Predictor(ckpt, threshold=1.5)


def test_mc_dropout_model_reports_uncertainty(tmp_path):
    data = generate_synthetic(tmp_path / "syn.hdf5", num_traces=24, seed=2)
    dataset = WaveformDataset(data, name="synthetic", window_length=64, unknown="drop", preload=True)
    torch.manual_seed(0)
    trainer = Trainer(model=RPNet(input_length=64, mc_samples=8), dataset=dataset,
                      config=_config(tmp_path / "ckpt", validation_split=0.0))
    ckpt = trainer.save_checkpoint(str(tmp_path / "rpnet.ckpt"))
    result = Predictor(ckpt, device="cpu").predict(str(data), name="synthetic", unknown="drop")
    assert result.uncertainty is not None and result.uncertainty.shape == (len(dataset),)
    assert np.all(result.uncertainty >= 0) and result.probabilities.shape == (len(dataset), 2)
    # the probabilities are the deterministic ones (as Trainer.evaluate), the uncertainty is extra
    ev = trainer.evaluate(dataset, return_predictions=True)
    np.testing.assert_allclose(result.probabilities, ev["probabilities"], atol=1e-6)
    strict = Predictor(ckpt, device="cpu", max_uncertainty=-1.0).predict(str(data), name="synthetic", unknown="drop")
    assert (strict.predictions == 2).all()  # every trace abstains
    assert "uncertainty" in strict.columns()


def test_bad_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        Predictor(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        Predictor(tmp_path / "junk.ckpt")


def test_obspy_stream_with_p_times(trained):
    obspy = pytest.importorskip("obspy", reason="ObsPy is an optional extra (pip install seispolarity[obspy])")
    from obspy.core.event import Event, Pick, ResourceIdentifier, WaveformStreamID

    data, ckpt, _ = trained
    predictor = Predictor(ckpt, device="cpu")
    with h5py.File(data, "r") as f:
        x, p = f["X"][:6], f["p_pick"][:6]
    t0 = obspy.UTCDateTime("2024-05-01T12:00:00")
    stream = obspy.Stream([obspy.Trace(x[i].astype(np.float64), header={
        "network": "XX", "station": f"S{i:02d}", "location": "", "channel": "HHZ", "sampling_rate": 100.0,
        "starttime": t0 + i}) for i in range(6)])
    picks = {f"XX.S{i:02d}..HHZ": t0 + i + p[i] / 100.0 for i in range(6)}
    result = predictor.predict(stream, picks=picks)
    expected = predictor.predict(x, p_index=p)
    np.testing.assert_array_equal(result.predictions, expected.predictions)
    np.testing.assert_allclose(result.probabilities, expected.probabilities, atol=1e-5)
    assert list(result.metadata["station"]) == [f"S{i:02d}" for i in range(6)]
    # an ObsPy Event: its P picks, the event id from its resource id; NET.STA takes the Z channel
    event = Event(resource_id=ResourceIdentifier("smi:local/event/ev42"), picks=[
        Pick(time=t0 + i + p[i] / 100.0, phase_hint="P",
             waveform_id=WaveformStreamID(network_code="XX", station_code=f"S{i:02d}", location_code="",
                                          channel_code="HHZ")) for i in range(6)])
    by_event = predictor.predict_stream(stream, event)
    np.testing.assert_array_equal(by_event.predictions, expected.predictions)
    assert set(by_event.metadata["event_id"]) == {"ev42"}
    by_station = predictor.predict_stream(stream, [("XX.S01", t0 + 1 + p[1] / 100.0)])
    assert by_station.predictions[0] == expected.predictions[1]
    with pytest.raises(ValueError, match="outside the trace"):
        predictor.predict_stream(stream, {"XX.S00..HHZ": t0 - 10})


def test_cli_writes_picks_csv(trained, tmp_path):
    data, ckpt, _ = trained
    out = tmp_path / "picks.csv"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "seispolarity.predict", f"ckpt={ckpt}", f"data={data}",
                           "name=synthetic", f"out={out}", "threshold=0.5", "device=cpu", "batch_size=32"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 96 predictions" in proc.stdout
    expected = Predictor(ckpt, device="cpu", threshold=0.5).predict(str(data), name="synthetic")
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["prediction"]) for r in rows] == expected.predictions.tolist()
    np.testing.assert_allclose([float(r["probability"]) for r in rows], expected.probability, atol=1e-6)
    # the same entry point in-process: a .npy array with P given, and a wrong argument
    from seispolarity.predict import main

    with h5py.File(data, "r") as f:
        np.save(tmp_path / "x.npy", f["X"][:10])
        p0 = int(f["p_pick"][0])
    assert main([f"ckpt={ckpt}", f"data={tmp_path / 'x.npy'}", f"p_index={p0}", f"out={tmp_path / 'npy.csv'}",
                 "device=cpu"]) == 0
    lines = (tmp_path / "npy.csv").read_text().splitlines()
    assert len(lines) == 11 and int(lines[1].split(",")[1]) == expected.raw_predictions[0]
    with pytest.raises(SystemExit, match="unknown argument 'colour'"):
        main([f"ckpt={ckpt}", "data=x", "colour=red"])
    with pytest.raises(SystemExit, match="missing data"):
        main([f"ckpt={ckpt}"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(trained):
    data, ckpt, _ = trained
    cpu = Predictor(ckpt, device="cpu").predict(str(data), name="synthetic")
    gpu = Predictor(ckpt, device="cuda").predict(str(data), name="synthetic")
    assert gpu.probabilities.dtype == np.float32
    np.testing.assert_allclose(gpu.probabilities, cpu.probabilities, atol=1e-4)
    assert (gpu.predictions == cpu.predictions).mean() >= 0.97


# ----------------------------------------------------------------------------------------------
# bad input: one line naming the argument, file or value, before any work; each message once
# ----------------------------------------------------------------------------------------------
def _predict_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seispolarity.predict", *map(str, args)], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def bad_input_files(tmp_path_factory):
    """12 SCSN traces of 600 samples, the same with a label 7 at row 5, a .npy of 600-sample traces
    and a folder."""
    folder = tmp_path_factory.mktemp("bad_input")
    write_scsn_file(folder / "scsn.hdf5", n=12)
    labels = np.arange(12) % 3
    labels[5] = 7
    write_scsn_file(folder / "badlabels.hdf5", n=12, Y=labels)
    np.save(folder / "x.npy", ramp_traces(12, 600))
    (folder / "adir").mkdir()
    return folder


# case: (arguments besides ckpt= and out=, the error line's start, exit status); {d}: the files' folder,
# {data}: the synthetic file (event ids, no station codes)
BAD_INPUT = {
    "threshold not a number": (["data={d}/scsn.hdf5", "name=scsn", "threshold=abc"],
                               "error: threshold='abc': expected a number between 0 and 1", 1),
    "batch_size below 1": (["data={d}/scsn.hdf5", "name=scsn", "batch_size=-3"],
                           "error: batch_size=-3: expected an integer >= 1", 1),
    "data option of the wrong type": (["data={d}/scsn.hdf5", "name=scsn", "data.max_traces=abc"],
                                      "error: data.max_traces='abc': expected an integer", 1),
    "data option the layout refuses": (["data={d}/scsn.hdf5", "name=scsn", "data.normalize=bogus"],
                                       "error: data.normalize='bogus'", 1),
    "unknown device type": (["data={d}/scsn.hdf5", "name=scsn", "device=tpu"],
                            "error: device='tpu': expected auto, cpu, cuda, cuda:N or mps", 1),
    "unknown data option": (["data={d}/scsn.hdf5", "name=scsn", "data.foo=1"],
                            "error: unknown option data.foo (name=scsn); accepted: data.component_order, ", 2),
    "out is a folder": (["data={d}/scsn.hdf5", "name=scsn", "out={d}/adir"],
                        "error: out={d}/adir: is a folder; expected the file to write, e.g. out={d}/adir/picks.csv", 1),
    "missing .npy": (["data={d}/nope.npy"], "error: {d}/nope.npy: no such file or directory", 1),
    "P after the trace": (["data={d}/x.npy", "p_index=700"],
                          "error: p_index=700 is outside the trace of 600 samples (0..599)", 1),
    "P before the trace": (["data={d}/x.npy", "p_index=-5"],
                           "error: p_index=-5 is outside the trace of 600 samples (0..599)", 1),
    "label in no map": (["data={d}/badlabels.hdf5", "name=scsn"],
                        "error: {d}/badlabels.hdf5:Y: label '7' at row 5 is not in label_map", 1),
    "skhash without station codes": (["data={data}", "name=synthetic", "skhash={d}/sk.csv"],
                                     "error: skhash={d}/sk.csv: {data} has no per-trace station codes; an SKHASH "
                                     "file needs both (e.g. the evids and sncls datasets of an SCSN or flat file", 1),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_cli_bad_input_is_one_line_before_any_work(case, trained, bad_input_files, tmp_path):
    data, ckpt, _ = trained
    arguments, start, code = BAD_INPUT[case]
    files = dict(d=bad_input_files, data=data)
    out = tmp_path / "picks.csv"
    p = _predict_cli(f"ckpt={ckpt}", f"out={out}", *(a.format(**files) for a in arguments))
    start = start.format(**files)
    assert p.returncode == code, explain(p)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), (start, p.stderr)
    assert "Traceback" not in p.stderr and str(ckpt) not in lines[0]
    # refused before any prediction: no CSV, no "wrote ..." line
    assert not out.exists() and "wrote" not in p.stdout, explain(p)
    if case == "unknown data option":
        assert "data.max_traces" in lines[0] and "data.label_map" in lines[0]


def test_cli_makes_missing_output_folders(trained, bad_input_files, tmp_path):
    """out= and skhash= in folders that do not exist yet: both are made."""
    _, ckpt, _ = trained
    out, skhash = tmp_path / "new" / "picks.csv", tmp_path / "other" / "polarities.csv"
    p = _predict_cli(f"ckpt={ckpt}", f"data={bad_input_files / 'scsn.hdf5'}", "name=scsn", f"out={out}",
                     f"skhash={skhash}")
    assert p.returncode == 0, explain(p)
    assert out.is_file() and skhash.read_text().startswith("event_id,")


def test_predictor_names_the_bad_argument(trained):
    _, ckpt, _ = trained
    cases = {"threshold": ("abc", "threshold='abc': expected a number between 0 and 1"),
             "batch_size": (2.5, "batch_size=2.5: expected an integer >= 1"),
             "mc_samples": (0, "mc_samples=0: expected an integer >= 1"),
             "device": ("tpu", "device='tpu': expected auto, cpu, cuda, cuda:N or mps")}
    for key, (value, message) in cases.items():
        with pytest.raises(ValueError) as info:
            Predictor(ckpt, **{"device": "cpu", key: value})
        assert str(info.value) == message


def test_arrays_refuse_a_p_pick_outside_the_trace(trained):
    _, ckpt, _ = trained
    predictor = Predictor(ckpt, device="cpu")
    x = ramp_traces(6, 600)
    for p_index, message in ((700, "p_index=700 is outside"), (-5, "p_index=-5 is outside"),
                             ([300, 300, 300, 600, 300, 300], r"p_index=600 \(row 3\) is outside"),
                             (np.nan, "p_index=nan is outside")):
        with pytest.raises(ValueError, match=message + r".* trace of 600 samples \(0\.\.599\)"):
            predictor.predict(x, p_index=p_index)
    assert len(predictor.predict(x, p_index=599)) == 6  # the last sample is inside


def test_label_map_fallback_is_said_once(trained, bad_input_files, tmp_path, caplog):
    from seispolarity.data.labels import LabelError
    from seispolarity.data.layouts import write_seisbench

    _, ckpt, _ = trained
    predictor = Predictor(ckpt, device="cpu")
    caplog.set_level(logging.INFO, logger="seispolarity.inference")
    # a label that fits neither the checkpoint's map nor the layout's: the error alone
    with pytest.raises(LabelError, match="label '7' at row 5"):
        predictor.predict_file(bad_input_files / "badlabels.hdf5", name="scsn")
    assert not [r for r in caplog.records if "label map" in r.getMessage()]
    # words the checkpoint's map (0/1/2) does not know, the layout's does: one info line
    rows = [{"source_id": f"ev{i}", "station_code": f"S{i}", "trace_P_arrival_sample": 500,
             "trace_polarity": ["positive", "negative"][i % 2]} for i in range(4)]
    write_seisbench(tmp_path / "instance", np.ones((4, 3, 1000), np.float32), rows)
    assert len(predictor.predict_file(tmp_path / "instance", name="instance")) == 4
    said = [r.getMessage() for r in caplog.records if "label map" in r.getMessage()]
    assert len(said) == 1 and "layout's own label map" in said[0] and "nothing is wrong" in said[0], said


def test_prediction_result_repr_is_short(trained):
    data, ckpt, _ = trained
    result = Predictor(ckpt, device="cpu").predict(str(data), name="synthetic")
    text = repr(result)
    assert len(text) < 400 and text.startswith("PredictionResult(96 traces: up "), text
    assert "probabilities (96, 3)" in text and "event_id" in text
