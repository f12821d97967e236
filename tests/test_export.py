"""SKHASH and HASH files from predictions: a hand-made example with the expected files written out."""
from __future__ import annotations

import numpy as np
import pytest

from seispolarity.export import (
    Observation,
    fortran_f,
    hash_event_line,
    make_observations,
    observations_from_result,
    parse_station_code,
    write_hash_phase,
    write_hash_stations,
    write_skhash_polarities,
    write_skhash_stations,
)
from seispolarity.inference import PredictionResult

# Event 3143312 is the first event of HASH v1.2's example file north2.phase (Northridge, 1994);
# its event line there (the "    31" in columns 40-45 is a field hash_driver2 skips):
HASH_EXAMPLE_EVENT = ("1994 12111 415.5034 14.55118 37.0618.13    31                                            0.07  0.10"
                      "                                        2.30               3143312")
CATALOG = {
    "3143312": dict(time="1994-01-21T11:04:15.50", latitude=34 + 14.55 / 60, longitude=-(118 + 37.06 / 60),
                    depth_km=18.13, magnitude=2.3, horizontal_error_km=0.07, vertical_error_km=0.10),
    # southern and eastern hemispheres, a negative magnitude, an origin time that rounds into the next day
    "ci40000001": dict(time="2020-02-29T23:59:59.996Z", latitude=-33.5, longitude=151.25, depth_km=7.5,
                       magnitude=-0.4),
}


def _observations():
    # predictions 1 down, 0 up, 2 unknown (left out), 0 up, 1 down; weight = probability of the class
    return make_observations(
        predictions=[1, 0, 2, 0, 1],
        event_ids=["3143312", "3143312", "3143312", "3143312", "ci40000001"],
        stations=["CI.IR2.VHZ", "CI.SWM.EHZ", "CI.PYR.VHZ", "CI.BRCY..EHZ", "AU.RIV.00.BHZ"],
        weights=[0.97, 0.62, 0.99, 0.91, 0.55])


def test_skhash_polarity_file(tmp_path):
    path = tmp_path / "polarities.csv"
    assert write_skhash_polarities(path, _observations()) == 4
    assert path.read_text() == (
        "event_id,network,station,location,channel,p_polarity\n"
        "3143312,CI,IR2,--,VHZ,-0.9700\n"
        "3143312,CI,SWM,--,EHZ,0.6200\n"
        "3143312,CI,BRCY,--,EHZ,0.9100\n"
        "ci40000001,AU,RIV,00,BHZ,-0.5500\n"
    )
    # a weight floor and extra SKHASH columns (precomputed takeoff angles and azimuths)
    obs = make_observations([0, 1], ["7", "7"], ["XX.ST000..EHZ", "XX.ST001..EHZ"], weights=[1.0, 0.05],
                            extra={"takeoff": [115.0, 115.0], "azimuth": [105.0, 110.3]})
    write_skhash_polarities(path, obs, min_weight=0.1)
    assert path.read_text() == (
        "event_id,network,station,location,channel,p_polarity,takeoff,azimuth\n"
        "7,XX,ST000,--,EHZ,1.0000,115.00000,105.00000\n"
    )


def test_hash_phase_file(tmp_path):
    path = tmp_path / "north.phase"
    assert write_hash_phase(path, _observations(), CATALOG) == 2
    expected = (
        "1994 12111 415.5034 14.55118 37.0618.13                                                  0.07  0.10"
        "                                        2.30               3143312\n"
        "IR2  CI  VHZ I D\n"
        "SWM  CI  EHZ E U\n"
        "BRCY CI  EHZ I U\n"
        "                                                                 3143312\n"
        "2020 3 1 0 0 0.0033S30.00151E15.00 7.50                                                  0.00  0.00"
        "                                        -.40            ci40000001\n"
        "RIV  AU  BHZ E D\n"
        "                                                              ci40000001\n"
    )
    text = path.read_text()
    assert text == expected
    lines = text.splitlines()
    # every column hash_driver2 reads equals HASH's own example line
    first = lines[0]
    assert len(first) == len(HASH_EXAMPLE_EVENT) == 165
    for a, b in ((0, 39), (88, 93), (94, 99), (139, 143), (149, 165)):
        assert first[a:b] == HASH_EXAMPLE_EVENT[a:b]
    # fields by the documented columns (Fortran format (i4,4i2,f5.2,i2,a1,f5.2,i3,a1,f5.2,f5.2,...))
    second = lines[5]
    assert (int(second[0:4]), int(second[4:6]), int(second[6:8]), int(second[8:10]), int(second[10:12])) == (2020, 3, 1, 0, 0)
    assert float(second[12:17]) == 0.0 and second[19] == "S" and float(second[20:25]) == 30.0
    assert int(second[25:28]) == 151 and second[28] == "E" and float(second[29:34]) == 15.0
    assert float(second[34:39]) == 7.5 and float(second[139:143]) == -0.4 and second[149:165].strip() == "ci40000001"
    # polarity lines (a4,1x,a2,2x,a3,1x,a1,1x,a1): station 1-4, network 6-7, component 10-12, onset 14, polarity 16
    pol = lines[3]
    assert (pol[0:4], pol[5:7], pol[9:12], pol[13], pol[15]) == ("BRCY", "CI", "EHZ", "I", "U")
    # the terminator's station field is blank
    assert lines[4][:4] == "    " and lines[7][:4] == "    "


def test_hash_and_skhash_station_files(tmp_path):
    stations = [dict(network="CI", station="SWM", location="", channel="EHZ", latitude=34.7101, longitude=-118.5868,
                     elevation=912),
                dict(network="CI", station="IR2", location="", channel="VHZ", latitude=34.1539, longitude=-118.2617,
                     elevation=-5)]
    write_hash_stations(tmp_path / "scsn.stations", stations)
    assert (tmp_path / "scsn.stations").read_text() == (  # sorted by station, as HASH needs
        "IR2  VHZ                                  34.15390 -118.26170    -5                       CI\n"
        "SWM  EHZ                                  34.71010 -118.58680   912                       CI\n"
    )
    line = (tmp_path / "scsn.stations").read_text().splitlines()[1]
    # GETSTAT_TRI: (a4,1x,a3,33x,f9.5,1x,f10.5,1x,i5,23x,a2)
    assert (line[0:4], line[5:8], float(line[41:50]), float(line[51:61]), int(line[62:67]), line[90:92]) == (
        "SWM ", "EHZ", 34.7101, -118.5868, 912, "CI")
    write_skhash_stations(tmp_path / "stations.csv", stations)
    assert (tmp_path / "stations.csv").read_text() == (
        "network,station,location,channel,latitude,longitude,elevation\n"
        "CI,SWM,--,EHZ,34.71010,-118.58680,912.0\n"
        "CI,IR2,--,VHZ,34.15390,-118.26170,-5.0\n"
    )


def test_observations_from_prediction_result(tmp_path):
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]], dtype=np.float32)
    result = PredictionResult(
        predictions=np.array([0, 1, 2]), probabilities=probs, probability=probs.max(1),
        raw_predictions=probs.argmax(1), indices=np.arange(3),
        metadata={"event_id": np.array([11, 11, 12]), "station": np.array([b"CI.PAS.HHZ", b"CI.ADO.HHZ", b"CI.PAS.HHZ"])})
    obs = observations_from_result(result)
    assert [(o.event_id, o.network, o.station, o.location, o.channel, o.polarity) for o in obs] == [
        ("11", "CI", "PAS", "", "HHZ", 0), ("11", "CI", "ADO", "", "HHZ", 1), ("12", "CI", "PAS", "", "HHZ", 2)]
    assert [o.weight for o in obs] == pytest.approx([0.9, 0.7, 0.4])
    assert [o.onset for o in obs] == ["I", "E", "E"]
    margin = observations_from_result(result, weight="margin")
    assert [o.weight for o in margin] == pytest.approx([0.85, 0.5, 0.0])
    write_skhash_polarities(tmp_path / "p.csv", margin)
    assert (tmp_path / "p.csv").read_text().splitlines()[1:] == ["11,CI,PAS,--,HHZ,0.8500", "11,CI,ADO,--,HHZ,-0.5000"]
    with pytest.raises(ValueError, match="no event ids"):
        observations_from_result(PredictionResult(result.predictions, probs, probs.max(1), result.raw_predictions))


def test_format_limits_are_clear_errors(tmp_path):
    assert parse_station_code("CI.PAS..HHZ") == {"network": "CI", "station": "PAS", "location": "", "channel": "HHZ"}
    assert parse_station_code(b"CI.PAS.HHZ")["channel"] == "HHZ"
    with pytest.raises(ValueError, match="station code"):
        parse_station_code("PAS")
    assert fortran_f(-0.5, 4, 2) == "-.50" and fortran_f(123.456, 5, 2) == "123.5" and fortran_f(3.14159, 5, 2) == " 3.14"
    long_name = [Observation("1", "CI", "LONGS", "", "HHZ", 0, 1.0, "I")]
    with pytest.raises(ValueError, match="longer than the 4 characters"):
        write_hash_phase(tmp_path / "x.phase", long_name, {"1": CATALOG["3143312"]})
    with pytest.raises(KeyError, match="no origin"):
        write_hash_phase(tmp_path / "x.phase", _observations(), {"3143312": CATALOG["3143312"]})
    with pytest.raises(ValueError, match="17 characters|longer than the 16"):
        hash_event_line("x" * 17, CATALOG["3143312"])
