"""WaveformDataset on real HDF5 files: exact windows (SCSN and flat layouts), preload vs streaming,
DataLoader workers, random_split, normalisation, event-grouped splits, filters, bad input."""
from __future__ import annotations

import logging
import pickle
import re

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, random_split

from conftest import ramp_traces, write_flat_file, write_scsn_file
from seispolarity import WaveformDataset
from seispolarity.data.dataset import split_indices
from seispolarity.data.labels import LabelError
from seispolarity.data.readers import DataFormatError

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------
# exact windows
# ----------------------------------------------------------------------------------------------
def test_scsn_layout_reads_the_exact_window(scsn_file):
    X = ramp_traces(30, 600)
    Y = np.arange(30) % 3
    ds = WaveformDataset(path=scsn_file, name="SCSN", window_length=400, normalize="none")
    assert len(ds) == 30 and ds.num_channels == 1 and ds.sampling_rate == 100.0
    for i in (0, 7, 29, -1):
        x, y = ds[i]
        row = i % 30
        assert x.dtype == torch.float32 and x.shape == (1, 400)
        assert y.dtype == torch.int64 and int(y) == Y[row]
        # window = samples [p - L/2, p + L/2) of the stored trace, P (sample 300) at L // 2
        np.testing.assert_array_equal(x[0].numpy(), X[row, 100:500])
        assert float(x[0, 200]) == X[row, 300]
    # the SCSN default window is the whole 600-sample trace
    full = WaveformDataset(path=scsn_file, name="scsn", normalize="none")
    np.testing.assert_array_equal(full[5][0][0].numpy(), X[5])
    # metadata of the layout
    assert set(full.metadata) >= {"event_id", "snr", "magnitude", "distance", "station"}
    # the SCSN pick files store labels as `fm`
    pick = write_scsn_file(scsn_file.with_name("scsn_pick_train.hdf5"), label_key="fm")
    assert WaveformDataset(path=pick, name="SCSN").labels.tolist() == Y.tolist()


@pytest.mark.parametrize("window", [400, 301])
def test_flat_layout_reads_the_exact_window_around_each_pick(tmp_path, window):
    n, length = 12, 800
    X = ramp_traces(n, length, channels=3)  # (N, 3, L), component order ZNE
    picks = np.linspace(300, 500, n).astype(int)
    Y = np.array(["U", "D", "X"] * 4)
    path = write_flat_file(tmp_path / "flat.hdf5", X, Y, p_pick=picks, evids=np.arange(n) // 2,
                           attrs={"component_order": "ZNE"})
    ds = WaveformDataset(path, name="flat", window_length=window, normalize="none",
                         label_map={"U": 0, "D": 1, "X": 2}, components="ZE")
    assert ds.num_channels == 2 and ds.has_pick
    half = window // 2
    for i in range(n):
        x, y = ds[i]
        assert x.shape == (2, window)
        lo = picks[i] - half
        np.testing.assert_array_equal(x[0].numpy(), X[i, 0, lo:lo + window])  # Z
        np.testing.assert_array_equal(x[1].numpy(), X[i, 2, lo:lo + window])  # E
        assert float(x[0, window // 2]) == X[i, 0, picks[i]]  # P at L // 2
        assert int(y) == [0, 1, 2][i % 3]


def test_label_map_stored_in_the_file_wins(tmp_path):
    X = ramp_traces(6, 500)
    path = write_flat_file(tmp_path / "f.hdf5", X, [0, 1, 2, 0, 1, 2], attrs={"p_index": 250,
                                                                             "label_map": '{"0": 1, "1": 0, "2": 2}'})
    ds = WaveformDataset(path, label_map={"0": 0, "1": 1, "2": 2})
    assert ds.labels.tolist() == [1, 0, 2, 1, 0, 2]


# ----------------------------------------------------------------------------------------------
# preload vs streaming
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("normalize", ["peak", "std", "none"])
def test_preload_and_streaming_give_identical_items_and_batches(synthetic_file, normalize):
    kw = dict(window_length=400, max_shift=7, normalize=normalize, max_traces=300)
    pre = WaveformDataset(synthetic_file, name="synthetic", preload=True, **kw)
    stream = WaveformDataset(synthetic_file, name="synthetic", preload=False, **kw)
    assert pre.preloaded and not stream.preloaded and len(pre) == len(stream) == 300
    # preload keeps only the windows (with the shift margin), as one contiguous tensor
    assert pre._store.shape == (300, 1, 400 + 2 * 7) and pre._store.is_contiguous()
    assert stream._store is None
    for i in (0, 1, 150, 299):
        a, b = pre[i], stream[i]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for (xa, ya), (xb, yb) in zip(DataLoader(pre, batch_size=64), DataLoader(stream, batch_size=64)):
        assert xa.shape[1:] == (1, 400) and torch.equal(xa, xb) and torch.equal(ya, yb)
    idx = torch.tensor([299, 3, 150, 4, 5, 77])  # the Trainer's batched path, any order
    ba, bb = pre.get_batch(idx), stream.get_batch(idx)
    assert set(ba) == set(bb)
    for key in ba:
        assert torch.equal(ba[key], bb[key]), key
    assert ba["waveforms"].shape == (6, 1, 414)


def test_normalisation_modes(synthetic_file):
    kw = dict(name="synthetic", max_traces=50, preload=True)
    raw = WaveformDataset(synthetic_file, normalize="none", **kw)
    peak = WaveformDataset(synthetic_file, normalize="peak", **kw)
    std = WaveformDataset(synthetic_file, normalize="std", **kw)
    for i in range(0, 50, 7):
        r = raw[i][0]
        assert float(r.abs().max()) != pytest.approx(1.0)  # the synthetic set is stored un-normalised
        assert float(peak[i][0].abs().max()) == pytest.approx(1.0, rel=1e-6)
        assert torch.allclose(peak[i][0], r / r.abs().max(), rtol=1e-5, atol=1e-7)
        assert float(std[i][0].std()) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="normalize"):
        WaveformDataset(synthetic_file, normalize="minmax")


def test_streaming_dataset_in_dataloader_workers(synthetic_file):
    ds = WaveformDataset(synthetic_file, name="synthetic", preload=False, max_traces=256)
    # the HDF5 handle is opened lazily, per process: none is held after construction
    assert ds.reader._handles == {}
    ds[0]
    pickle.loads(pickle.dumps(ds))  # picklable after a read (spawned workers get a copy)
    ref = WaveformDataset(synthetic_file, name="synthetic", preload=True, max_traces=256)
    loader = DataLoader(ds, batch_size=32, num_workers=2, shuffle=False)
    got_x, got_y = zip(*loader)
    assert torch.equal(torch.cat(got_x), torch.stack([ref[i][0] for i in range(256)]))
    assert torch.equal(torch.cat(got_y), ref.labels)


def test_random_split_and_subsets(synthetic_file):
    ds = WaveformDataset(synthetic_file, name="synthetic", preload=True, max_traces=200)
    train, val = random_split(ds, [150, 50], generator=torch.Generator().manual_seed(0))
    assert len(train) == 150 and len(val) == 50
    assert not set(train.indices) & set(val.indices)
    x, y = train[3]
    ref_x, ref_y = ds[train.indices[3]]
    assert torch.equal(x, ref_x) and torch.equal(y, ref_y)
    xb, yb = next(iter(DataLoader(val, batch_size=16, shuffle=True)))
    assert xb.shape == (16, 1, 400) and yb.dtype == torch.int64
    # a subset view shares the preloaded tensor
    view = ds.subset(train.indices)
    assert view._store is ds._store and len(view) == 150
    assert torch.equal(view[3][0], ref_x)


# ----------------------------------------------------------------------------------------------
# splits, filters, unknown
# ----------------------------------------------------------------------------------------------
def test_event_grouped_split_is_disjoint_seeded_and_deterministic(synthetic_file):
    ds = WaveformDataset(synthetic_file, name="synthetic", preload=True)
    events = ds.event_ids()
    assert events is not None and len(np.unique(events)) > 50
    train, val, test = ds.split(0.2, 0.1, seed=3)
    ev = [set(part.event_ids().tolist()) for part in (train, val, test)]
    assert not ev[0] & ev[1] and not ev[0] & ev[2] and not ev[1] & ev[2]
    assert len(train) + len(val) + len(test) == len(ds)
    assert abs(len(val) - 0.2 * len(ds)) < 0.05 * len(ds)
    assert abs(len(test) - 0.1 * len(ds)) < 0.05 * len(ds)
    again = ds.split(0.2, 0.1, seed=3)
    assert all(np.array_equal(a.rows, b.rows) for a, b in zip((train, val, test), again))
    other = ds.split(0.2, 0.1, seed=4)
    assert not np.array_equal(other[1].rows, val.rows)
    # the subsets read the same windows as the parent
    assert torch.equal(val[0][0], ds[int(np.flatnonzero(ds.rows == val.rows[0])[0])][0])


def test_split_without_event_ids_is_a_seeded_random_split():
    tr, va, te = split_indices(100, 0.2, 0.1, seed=0)
    assert (len(tr), len(va), len(te)) == (70, 20, 10)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(100))
    assert np.array_equal(va, split_indices(100, 0.2, 0.1, seed=0)[1])
    with pytest.raises(ValueError, match="fractions"):
        split_indices(10, 0.6, 0.5, seed=0)


def test_filters_and_unknown_drop(synthetic_file, caplog):
    full = WaveformDataset(synthetic_file, name="synthetic")
    with h5py.File(synthetic_file) as f:
        snr, labels = f["snr"][()], f["Y"][()]
    with caplog.at_level(logging.INFO, logger="seispolarity"):
        ds = WaveformDataset(synthetic_file, name="synthetic", filters={"snr": [10, None]})
    assert len(ds) == int((snr >= 10).sum()) and (ds.metadata["snr"] >= 10).all()
    assert ds.dropped["filter_snr"] == len(full) - len(ds)
    assert "filter_snr" in caplog.text
    both = WaveformDataset(synthetic_file, name="synthetic", filters={"snr": [0, 20]}, unknown="drop")
    assert len(both) == int(((snr >= 0) & (snr <= 20) & (labels != 2)).sum())
    drop = WaveformDataset(synthetic_file, name="synthetic", unknown="drop", preload=True)
    assert 2 not in drop.labels.tolist() and len(drop) == int((labels != 2).sum())
    assert drop.dropped["unknown_label"] == int((labels == 2).sum())
    with pytest.raises(ValueError, match="'depth'"):
        WaveformDataset(synthetic_file, name="synthetic", filters={"depth": [0, 10]})
    with pytest.raises(ValueError, match="unknown="):
        WaveformDataset(synthetic_file, name="synthetic", unknown="maybe")


# ----------------------------------------------------------------------------------------------
# bad input: one clear error naming the file and the problem
# ----------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    missing = tmp_path / "nope.hdf5"
    with pytest.raises(FileNotFoundError, match="nope.hdf5"):
        WaveformDataset(missing, name="SCSN")


def test_file_without_x(tmp_path):
    path = tmp_path / "nox.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("Y", data=np.zeros(3, dtype=np.int64))
    with pytest.raises(DataFormatError, match=r"nox\.hdf5.*'X'"):
        WaveformDataset(path, name="SCSN")
    not_hdf5 = tmp_path / "text.hdf5"
    not_hdf5.write_text("hello")
    with pytest.raises(DataFormatError, match="text.hdf5"):
        WaveformDataset(not_hdf5, name="flat")


def test_label_outside_the_map(tmp_path):
    path = write_scsn_file(tmp_path / "badlabel.hdf5", n=9, Y=np.array([0, 1, 2, 0, 7, 1, 2, 0, 1]))
    with pytest.raises(LabelError) as err:
        WaveformDataset(path, name="SCSN")
    message = str(err.value)
    assert "badlabel.hdf5" in message and "row 4" in message and "'7'" in message
    assert len(message.splitlines()) == 1


def test_window_longer_than_the_trace(scsn_file):
    with pytest.raises(DataFormatError, match=r"scsn_p_2000.*longer than the traces \(600\)"):
        WaveformDataset(scsn_file, name="SCSN", window_length=700)
    with pytest.raises(DataFormatError, match="max_shift"):
        WaveformDataset(scsn_file, name="SCSN", window_length=600, max_shift=5)


@pytest.mark.parametrize("preload", [True, False])
def test_nan_trace_is_an_error_naming_file_and_row(tmp_path, preload):
    X = ramp_traces(10, 600)
    X[6, 320] = np.nan
    path = write_scsn_file(tmp_path / "withnan.hdf5", X=X)
    with pytest.raises(DataFormatError, match=r"withnan\.hdf5.*row 6.*nan_policy"):
        ds = WaveformDataset(path, name="SCSN", preload=preload)
        for i in range(len(ds)):
            ds[i]


@pytest.mark.parametrize("preload", [True, False])
def test_nan_policy_drop_drops_with_a_count(tmp_path, caplog, preload):
    X = ramp_traces(10, 600)
    X[2, 10] = np.nan
    X[6, 320] = np.inf
    path = write_scsn_file(tmp_path / "withnan.hdf5", X=X)
    with caplog.at_level(logging.INFO, logger="seispolarity"):
        ds = WaveformDataset(path, name="SCSN", preload=preload, nan_policy="drop", normalize="none")
    assert len(ds) == 8 and ds.dropped["nan_or_inf"] == 2
    assert "dropped 2 traces (nan_or_inf)" in caplog.text
    assert ds.rows.tolist() == [0, 1, 3, 4, 5, 7, 8, 9]
    np.testing.assert_array_equal(ds[2][0][0].numpy(), X[3])
    assert int(ds[2][1]) == 0  # label of row 3
    with pytest.raises(ValueError, match="nan_policy"):
        WaveformDataset(path, name="SCSN", nan_policy="ignore")


def test_a_file_whose_every_row_is_skipped_says_so(tmp_path):
    """SCSN's P is at sample 300: traces of 100 samples are all bad rows."""
    path = write_scsn_file(tmp_path / "short.hdf5", n=12, X=np.ones((12, 100), dtype=np.float32))
    with pytest.raises(DataFormatError, match=r"short.hdf5: no traces to read \(bad rows skipped: "
                                              r"\{'p_pick_outside_trace': 12\}\)"):
        WaveformDataset(path, name="scsn", on_bad_row="skip")


@pytest.mark.parametrize("options, message", [
    ({"max_traces": 0}, "max_traces=0; expected None (all) or a whole number >= 1"),
    ({"max_traces": -1}, "max_traces=-1; expected None (all) or a whole number >= 1"),
    ({"unknown": "auto"}, "unknown='auto'; expected one of 'keep', 'drop'"),
    ({"nan_policy": "zero"}, "nan_policy='zero'; expected 'error' or 'drop'"),
])
def test_option_values_are_checked_before_the_file_is_read(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        WaveformDataset("/no/such/file.hdf5", name="scsn", **options)


def test_more_components_than_a_one_channel_file_holds_is_an_error(tmp_path):
    path = write_scsn_file(tmp_path / "one.hdf5", n=6)
    for components in (None, "Z", "all"):
        assert WaveformDataset(path, name="flat", components=components, p_index=300).num_channels == 1
    with pytest.raises(DataFormatError, match=r"one.hdf5: X \(6, 600\) holds one channel per trace; "
                                              r"components='ZNE' asks for 3"):
        WaveformDataset(path, name="flat", components="ZNE", p_index=300)
