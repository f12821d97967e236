"""Polarities for focal-mechanism software: SKHASH polarity CSV and the HASH (v1.2) phase format.

From predictions plus station metadata to the files these programs read:

    from seispolarity.export import observations_from_result, write_skhash_polarities, write_hash_phase

    obs = observations_from_result(result)                 # event ids and station codes from the data
    write_skhash_polarities("pol.csv", obs)                # SKHASH: $fpfile / $dlpfile
    write_hash_phase("north.phase", obs, catalog)          # HASH hash_driver2 "phase" file
    write_hash_stations("scsn.stations", stations)         # HASH station list (GETSTAT_TRI)
    write_skhash_stations("stations.csv", stations)        # SKHASH $stfile

Formats (sources):

- SKHASH polarity file: comma-separated with a header; required ``event_id`` and ``p_polarity``
  (the weight of the measurement, a float in [-1, 1], + up, - down), and by default ``network``,
  ``station``, ``location``, ``channel`` (SKHASH v1.1 manual, "SKHASH File Format", Polarity File(s);
  Skoumal, Hardebeck & Shearer 2024, SRL). SKHASH ignores |weight| below ``$min_polarity_weight``
  (default 0.1). We write ``event_id,network,station,location,channel,p_polarity`` (+ optional
  columns such as ``origin_latitude``, ``takeoff``), an empty location as ``--``.
- SKHASH station file: ``network,station,location,channel,latitude,longitude,elevation`` (m).
- HASH phase file of ``hash_driver2.f`` (SCEDC "phase" format, FPFIT-like; HASH v1.2, Hardebeck &
  Shearer 2002). Event line, Fortran format ``(i4,4i2,f5.2,i2,a1,f5.2,i3,a1,f5.2,f5.2,49x,f5.2,1x,
  f5.2,40x,f4.2,6x,a16)``: cols 1-4 year, 5-12 month/day/hour/minute, 13-17 seconds, 18-19 latitude
  degrees, 20 'S' for south, 21-25 latitude minutes, 26-28 longitude degrees, 29 'E' for east (else
  west), 30-34 longitude minutes, 35-39 depth km, 89-93 horizontal and 95-99 vertical location
  uncertainty km, 140-143 magnitude, 150-165 event id. Polarity lines ``(a4,1x,a2,2x,a3,1x,a1,1x,a1)``:
  cols 1-4 station, 6-7 network, 10-12 component, 14 onset I/E, 16 polarity U/D. An event ends with
  a line whose station field is blank (we write the event id in cols 57-72, as the HASH example
  ``north2.phase`` does).
- HASH station list read by ``GETSTAT_TRI`` ``(a4,1x,a3,33x,f9.5,1x,f10.5,1x,i5,23x,a2)``: cols 1-4
  station, 6-8 component, 42-50 latitude, 52-61 longitude, 63-67 elevation m, 91-92 network;
  sorted alphabetically (HASH requires it).
"""
from __future__ import annotations

import csv
import datetime as _dt
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .data.labels import DOWN, UP
from .plain import to_plain

SKHASH_COLUMNS = ("event_id", "network", "station", "location", "channel", "p_polarity")
SKHASH_STATION_COLUMNS = ("network", "station", "location", "channel", "latitude", "longitude", "elevation")


@dataclass
class Observation:
    """One P first motion of one event at one channel.

    Attributes:
        polarity: 0 up, 1 down, 2 unknown (dropped by the writers).
        weight: confidence in [0, 1] (SKHASH: |p_polarity|; HASH: only the onset I/E).
        onset: "I" (impulsive) or "E" (emergent) for HASH; derived from the weight when empty.
        extra: further SKHASH columns (origin_latitude, origin_longitude, origin_depth_km, takeoff,
            azimuth, sr_dist_km, ...).
    """

    event_id: str
    network: str
    station: str
    location: str
    channel: str
    polarity: int
    weight: float = 1.0
    onset: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def parse_station_code(code: Any) -> dict[str, str]:
    """``NET.STA.LOC.CHA`` (SEED id), ``NET.STA.CHA`` (SCSN ``sncls``), ``NET.STA`` or a mapping with
    network/station/location/channel -> the four codes (missing ones empty)."""
    if isinstance(code, Mapping):
        return {k: _text(code.get(k, "")) for k in ("network", "station", "location", "channel")}
    if isinstance(code, (tuple, list)) and len(code) == 4:
        return dict(zip(("network", "station", "location", "channel"), (_text(c) for c in code)))
    parts = _text(code).split(".")
    if len(parts) == 4:
        net, sta, loc, cha = parts
    elif len(parts) == 3:
        (net, sta, cha), loc = parts, ""
    elif len(parts) == 2:
        (net, sta), loc, cha = parts, "", ""
    else:
        raise ValueError(f"station code {code!r}: expected NET.STA.LOC.CHA, NET.STA.CHA or NET.STA")
    return {"network": net, "station": sta, "location": "" if loc == "--" else loc, "channel": cha}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def make_observations(predictions: Sequence[int], event_ids: Sequence[Any], stations: Sequence[Any],
                      weights: Sequence[float] | None = None, onsets: Sequence[str] | None = None,
                      extra: Mapping[str, Sequence[Any]] | None = None,
                      impulsive_weight: float = 0.9) -> list[Observation]:
    """Observations from aligned per-trace arrays.

    ``stations``: codes as ``parse_station_code`` reads them. ``weights`` default 1. ``onsets``
    default "I" where the weight is at least ``impulsive_weight``, else "E". ``extra``: column ->
    per-trace values (e.g. ``{"takeoff": [...], "azimuth": [...]}``).
    """
    n = len(predictions)
    if len(event_ids) != n or len(stations) != n:
        raise ValueError(f"{n} predictions but {len(event_ids)} event ids and {len(stations)} stations")
    weights = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(weights) != n:
        raise ValueError(f"{n} predictions but {len(weights)} weights")
    out = []
    for i in range(n):
        codes = parse_station_code(stations[i])
        w = float(np.clip(weights[i], 0.0, 1.0))
        # (the 1e-6: weights are float32 probabilities)
        onset = _text(onsets[i]).upper() if onsets is not None else ("I" if w >= impulsive_weight - 1e-6 else "E")
        out.append(Observation(event_id=_text(event_ids[i]), polarity=int(predictions[i]), weight=w, onset=onset,
                               extra={k: to_plain(v[i]) for k, v in (extra or {}).items()}, **codes))
    return out


def observations_from_result(result, event_ids: Sequence[Any] | None = None, stations: Sequence[Any] | None = None,
                             weight: str | Sequence[float] = "probability", impulsive_weight: float = 0.9,
                             extra: Mapping[str, Sequence[Any]] | None = None) -> list[Observation]:
    """Observations from a ``PredictionResult`` (seispolarity.inference).

    Event ids default to the data's ``event_id`` metadata; stations to ``network``/``station``/
    ``location``/``channel`` metadata (ObsPy input) or the ``station`` codes of the data (e.g. SCSN
    ``sncls``). ``weight``: "probability" (of the predicted class, default), "margin"
    (|p_up - p_down|), "uniform" (1.0), or per-trace values.
    """
    meta = result.metadata
    if event_ids is None:
        if "event_id" not in meta:
            raise ValueError("the predictions carry no event ids; pass event_ids=")
        event_ids = meta["event_id"]
    if stations is None:
        if all(k in meta for k in ("network", "station", "channel")):
            loc = meta.get("location", np.full(len(result), ""))
            stations = [(meta["network"][i], meta["station"][i], loc[i], meta["channel"][i])
                        for i in range(len(result))]
        elif "station" in meta:
            stations = meta["station"]
        else:
            raise ValueError("the predictions carry no station codes; pass stations=")
    if isinstance(weight, str):
        if weight == "probability":
            weights = result.probability
        elif weight == "margin":
            weights = np.abs(result.probabilities[:, UP] - result.probabilities[:, DOWN])
        elif weight == "uniform":
            weights = np.ones(len(result))
        else:
            raise ValueError(f"weight={weight!r}; expected 'probability', 'margin', 'uniform' or an array")
    else:
        weights = weight
    return make_observations(result.predictions, event_ids, stations, weights, extra=extra,
                             impulsive_weight=impulsive_weight)


def _usable(observations: Iterable[Observation], min_weight: float) -> list[Observation]:
    return [o for o in observations if o.polarity in (UP, DOWN) and o.weight >= min_weight]


# -- SKHASH ----------------------------------------------------------------------------------------
def write_skhash_polarities(path: str | os.PathLike, observations: Iterable[Observation], min_weight: float = 0.0,
                            decimals: int = 4, empty_location: str = "--") -> int:
    """SKHASH polarity CSV; unknown polarities (and weights below ``min_weight``) are left out.
    Extra columns present in any observation are appended (empty where missing). Returns the rows."""
    rows = _usable(observations, min_weight)
    extras: list[str] = []
    for o in rows:
        extras += [k for k in o.extra if k not in extras and k not in SKHASH_COLUMNS]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(list(SKHASH_COLUMNS) + extras)
        for o in rows:
            signed = o.weight if o.polarity == UP else -o.weight
            writer.writerow([o.event_id, o.network, o.station, o.location or empty_location, o.channel,
                             f"{signed:.{decimals}f}"] + [_csv_value(o.extra.get(k)) for k in extras])
    return len(rows)


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.5f}" if math.isfinite(value) else ""
    return str(value)


def write_skhash_stations(path: str | os.PathLike, stations: Iterable[Mapping[str, Any]],
                          empty_location: str = "--") -> int:
    """SKHASH station file from mappings with network, station, location, channel, latitude,
    longitude, elevation (m)."""
    rows = list(stations)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(SKHASH_STATION_COLUMNS)
        for s in rows:
            writer.writerow([_text(s["network"]), _text(s["station"]), _text(s.get("location", "")) or empty_location,
                             _text(s["channel"]), f"{float(s['latitude']):.5f}", f"{float(s['longitude']):.5f}",
                             f"{float(s.get('elevation', 0.0)):.1f}"])
    return len(rows)


# -- HASH --------------------------------------------------------------------------------------------
def fortran_f(value: float, width: int, decimals: int) -> str:
    """Fortran ``Fw.d`` output, right-justified; fewer decimals (and no leading zero) when the value
    does not fit, as Fortran's list reader still reads it with an explicit decimal point."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot write {value} in a fixed-width field")
    for d in range(decimals, -1, -1):
        text = f"{value:.{d}f}"
        if len(text) > width and text.lstrip("-").startswith("0."):
            text = text.replace("0.", ".", 1)
        if len(text) <= width:
            return text.rjust(width)
    raise ValueError(f"{value} does not fit in {width} characters (F{width}.{decimals})")


def _fixed(text: str, width: int, what: str) -> str:
    if len(text) > width:
        raise ValueError(f"{what} {text!r} is longer than the {width} characters of the HASH format")
    return text


def _as_datetime(time: Any) -> _dt.datetime:
    if hasattr(time, "datetime"):  # obspy UTCDateTime
        time = time.datetime
    if isinstance(time, str):
        time = _dt.datetime.fromisoformat(time.replace("Z", "+00:00"))
    if isinstance(time, np.datetime64):
        time = _dt.datetime.fromisoformat(str(np.datetime_as_string(time, unit="us")))
    if not isinstance(time, _dt.datetime):
        raise TypeError(f"origin time {time!r}: expected a datetime, an ISO string or an ObsPy UTCDateTime")
    if time.tzinfo is not None:
        time = time.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    # to centiseconds (the format's resolution), carrying into minutes and beyond
    micro = round(time.microsecond / 10_000) * 10_000
    return time.replace(microsecond=0) + _dt.timedelta(microseconds=micro)


def _degrees_minutes(value: float) -> tuple[int, float]:
    value = abs(float(value))
    deg = int(value)
    minutes = round((value - deg) * 60.0, 2)
    if minutes >= 60.0:
        deg, minutes = deg + 1, 0.0
    return deg, minutes


def hash_event_line(event_id: Any, origin: Mapping[str, Any]) -> str:
    """The 165-column event line of hash_driver2's phase file.

    ``origin``: time, latitude, longitude (degrees, signed), depth_km, and optionally magnitude,
    horizontal_error_km, vertical_error_km (0 when unknown; HASH then assumes 1 km vertically).
    """
    t = _as_datetime(origin["time"])
    lat, lon = float(origin["latitude"]), float(origin["longitude"])
    latd, latm = _degrees_minutes(lat)
    lond, lonm = _degrees_minutes(lon)
    line = (f"{t.year:4d}{t.month:2d}{t.day:2d}{t.hour:2d}{t.minute:2d}"
            + fortran_f(t.second + t.microsecond / 1e6, 5, 2)
            + f"{latd:2d}" + ("S" if lat < 0 else " ") + fortran_f(latm, 5, 2)
            + f"{lond:3d}" + ("E" if lon >= 0 else " ") + fortran_f(lonm, 5, 2)
            + fortran_f(origin["depth_km"], 5, 2)
            + " " * 49 + fortran_f(origin.get("horizontal_error_km") or 0.0, 5, 2)
            + " " + fortran_f(origin.get("vertical_error_km") or 0.0, 5, 2)
            + " " * 40 + fortran_f(origin.get("magnitude") or 0.0, 4, 2)
            + " " * 6 + _fixed(_text(event_id), 16, "event id").rjust(16))
    assert len(line) == 165, line
    return line


def hash_polarity_line(obs: Observation) -> str:
    """``(a4,1x,a2,2x,a3,1x,a1,1x,a1)``: station, network, component, onset I/E, polarity U/D."""
    onset = (obs.onset or "E").upper()
    if onset not in ("I", "E"):
        raise ValueError(f"onset {obs.onset!r} at {obs.station}: expected 'I' or 'E'")
    return (_fixed(obs.station, 4, "station").ljust(4) + " " + _fixed(obs.network, 2, "network").ljust(2) + "  "
            + _fixed(obs.channel, 3, "channel").ljust(3) + " " + onset + " " + ("U" if obs.polarity == UP else "D"))


def write_hash_phase(path: str | os.PathLike, observations: Iterable[Observation],
                     catalog: Mapping[Any, Mapping[str, Any]], min_weight: float = 0.0) -> int:
    """HASH (hash_driver2) phase file: per event, the event line, one line per up/down polarity and
    the terminator line. Events appear in the order of their first observation; events without any
    up/down polarity are left out. ``catalog``: event id -> origin (see ``hash_event_line``).
    Returns the number of events written."""
    by_event: dict[str, list[Observation]] = {}
    for o in _usable(observations, min_weight):
        by_event.setdefault(o.event_id, []).append(o)
    keys = {_text(k): v for k, v in catalog.items()}
    missing = [e for e in by_event if e not in keys]
    if missing:
        raise KeyError(f"no origin in the catalog for event(s) {missing[:5]}{'...' if len(missing) > 5 else ''}")
    lines = []
    for event_id, obs in by_event.items():
        lines.append(hash_event_line(event_id, keys[event_id]))
        lines += [hash_polarity_line(o) for o in obs]
        lines.append(" " * 56 + event_id.rjust(16))
    with open(path, "w") as fh:
        fh.write("".join(line + "\n" for line in lines))
    return len(by_event)


def write_hash_stations(path: str | os.PathLike, stations: Iterable[Mapping[str, Any]]) -> int:
    """HASH station list (GETSTAT_TRI format), sorted by station and component as HASH needs.
    Each station: network, station, channel, latitude, longitude, elevation (m)."""
    rows = sorted(stations, key=lambda s: (_text(s["station"]), _text(s["channel"])))
    lines = []
    for s in rows:
        lines.append(_fixed(_text(s["station"]), 4, "station").ljust(4) + " "
                     + _fixed(_text(s["channel"]), 3, "channel").ljust(3) + " " * 33
                     + fortran_f(s["latitude"], 9, 5) + " " + fortran_f(s["longitude"], 10, 5) + " "
                     + f"{int(round(float(s.get('elevation', 0.0)))):5d}" + " " * 23
                     + _fixed(_text(s["network"]), 2, "network").ljust(2))
    with open(path, "w") as fh:
        fh.write("".join(line + "\n" for line in lines))
    return len(rows)


__all__ = ["Observation", "parse_station_code", "make_observations", "observations_from_result",
           "write_skhash_polarities", "write_skhash_stations", "write_hash_phase", "write_hash_stations",
           "hash_event_line", "hash_polarity_line", "fortran_f", "SKHASH_COLUMNS"]
