"""Record SpikingJelly's and Tonic's frames for fixed event sets (parity goldens).

Run: ``python tests/golden/make_frames_golden.py``. Needs ``spikingjelly==2.0.0`` and ``tonic``
installed (``pip install --no-deps``; their unrelated extras are replaced by placeholders, see
``_thirdparty.py``). Writes ``tests/golden/frames_parity.json`` with the inputs and the frames
produced by

* SpikingJelly ``datasets.utils.integrate_events_by_fixed_frames_number(events, split_by,
  T, H, W)`` with ``split_by`` in ``number`` / ``time`` (masnn ``remainder="last"``);
* Tonic ``functional.to_frame_numpy(events, sensor_size=(W, H, P), n_event_bins=T |
  n_time_bins=T)`` (masnn ``remainder="drop"``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _thirdparty import spikingjelly_utils, tonic_to_frame  # noqa: E402

# (name, seed, number of events, height, width, timesteps, time span in us)
CASES = [
    ("h6w10_n500_T4", 0, 500, 6, 10, 4, 100_003),
    ("h5w3_n997_T7", 1, 997, 5, 3, 7, 54_321),
    ("h9w16_n2050_T16", 2, 2050, 9, 16, 16, 1_000_000),
]


def make_case(seed: int, n: int, h: int, w: int, span: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    # dense in time so that no time bin is empty (SpikingJelly raises IndexError on one)
    t = np.sort(rng.integers(0, span, n))
    t[0], t[-1] = 0, span
    return {
        "t": t.tolist(),
        "x": rng.integers(0, w, n).tolist(),
        "y": rng.integers(0, h, n).tolist(),
        "p": rng.integers(0, 2, n).tolist(),
    }


def main() -> None:
    sj = spikingjelly_utils()
    to_frame = tonic_to_frame()
    if sj is None or to_frame is None:
        raise SystemExit("needs spikingjelly==2.0.0 and tonic (pip install --no-deps ...)")
    import spikingjelly
    import tonic

    out: dict[str, object] = {
        "producers": {
            "last": f"spikingjelly {getattr(spikingjelly, '__version__', '2.0.0')} "
            "integrate_events_by_fixed_frames_number",
            "drop": f"tonic {tonic.__version__} functional.to_frame_numpy",
        },
        "cases": [],
    }
    for name, seed, n, h, w, T, span in CASES:
        ev = make_case(seed, n, h, w, span)
        arrays = {k: np.asarray(v, np.int64) for k, v in ev.items()}
        frames = {}
        for split_by, sj_name, tonic_kw in (
            ("count", "number", "n_event_bins"),
            ("time", "time", "n_time_bins"),
        ):
            sj_frames = sj.integrate_events_by_fixed_frames_number(arrays, sj_name, T, h, w)
            structured = np.zeros(n, [("x", "<i2"), ("y", "<i2"), ("p", "<i2"), ("t", "<i8")])
            for k in ("x", "y", "p", "t"):
                structured[k] = arrays[k]
            tonic_frames = to_frame(structured, sensor_size=(w, h, 2), **{tonic_kw: T})
            frames[f"{split_by}_last"] = np.asarray(sj_frames).astype(int).ravel().tolist()
            frames[f"{split_by}_drop"] = np.asarray(tonic_frames).astype(int).ravel().tolist()
            assert np.asarray(sj_frames).shape == (T, 2, h, w)
            assert np.asarray(tonic_frames).shape == (T, 2, h, w)
        out["cases"].append(  # type: ignore[union-attr]
            {"name": name, "height": h, "width": w, "timesteps": T, "events": ev, "frames": frames}
        )
    path = HERE / "frames_parity.json"
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({len(CASES)} cases)")


if __name__ == "__main__":
    main()
