"""Event decoding throughput: masnn.read_aedat vs SpikingJelly load_aedat_v3, Gait text parsing.

Usage::

    python benchmarks/bench_aedat.py [--events 2000000] [--sj-events 2000000] [--gait-files 200]

Builds a synthetic AEDAT 3.1 file (DVS128 coordinates, 4096-event polarity packets with
interleaved special-event packets and timestamp overflows) in a temporary directory, times
``read_aedat`` (best of 5) and, if importable, SpikingJelly 2.0.0's ``load_aedat_v3`` on the
same file in the same run (once; it decodes event by event in Python), checks that both
return the same events, then times the DVS128 Gait text parser on synthetic ``t x y p`` files.
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from masnn.bench.timing import best_of
from masnn.events import make_events, read_aedat
from masnn.events.aedat import encode_polarity
from masnn.events.textio import read_event_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "golden"))


def make_aedat(path: Path, n: int, packet: int = 4096) -> None:
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 3 * 2**31, n))  # crosses two overflow boundaries
    ev = make_events(t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n))
    rec = encode_polarity(ev)
    ovf = t >> 31
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n")
        a = 0
        while a < n:
            b = min(n, a + packet)
            b = a + int(np.searchsorted(ovf[a:b], ovf[a], side="right"))
            f.write(struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, 1, 1, 1) + struct.pack("<Ii", 1, 0))
            f.write(struct.pack("<hhiiiiii", 1, 1, 8, 4, int(ovf[a]), b - a, b - a, b - a))
            f.write(rec[a:b].tobytes())
            a = b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--gait-files", type=int, default=200)
    ap.add_argument("--gait-lines", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.aedat"
        make_aedat(path, args.events)
        size = path.stat().st_size
        ours = read_aedat(path)
        t_ours = best_of(lambda: read_aedat(path), 5)
        rate = ours.size / t_ours
        print(f"file: {size / 1e6:.1f} MB, {ours.size:,} events")
        print(f"masnn read_aedat: {t_ours * 1e3:.1f} ms  -> {rate / 1e6:.0f} M events/s")
        from _thirdparty import spikingjelly_utils

        sj = spikingjelly_utils()
        if sj is None:
            print("spikingjelly: not importable, skipped")
        else:
            t0 = time.perf_counter()
            ref = sj.load_aedat_v3(str(path))
            t_sj = time.perf_counter() - t0
            same = all(np.array_equal(ours[k], ref[k]) for k in ("t", "x", "y", "p"))
            print(
                f"spikingjelly load_aedat_v3: {t_sj:.2f} s -> {ours.size / t_sj / 1e6:.2f} M events/s; "
                f"speed-up {t_sj / t_ours:.0f}x; identical output: {same}"
            )
        # Gait text
        rng = np.random.default_rng(1)
        gdir = Path(d) / "gait"
        gdir.mkdir()
        files = []
        for k in range(args.gait_files):
            n = args.gait_lines
            cols = np.stack(
                [
                    np.sort(rng.integers(0, 4_000_000, n)) + 10**9,
                    rng.integers(0, 128, n),
                    rng.integers(0, 128, n),
                    rng.integers(0, 2, n),
                ],
                1,
            )
            f = gdir / f"{k}.txt"
            np.savetxt(f, cols, fmt="%d")
            files.append(f)
        total_bytes = sum(f.stat().st_size for f in files)
        t_g = best_of(lambda: [read_event_text(f) for f in files], 3)
        print(
            f"gait text: {len(files)} files, {len(files) * args.gait_lines:,} lines, "
            f"{total_bytes / 1e6:.1f} MB in {t_g:.2f} s -> {len(files) / t_g:.0f} files/s, "
            f"{len(files) * args.gait_lines / t_g / 1e6:.1f} M lines/s, {total_bytes / t_g / 1e6:.0f} MB/s"
        )


if __name__ == "__main__":
    main()
