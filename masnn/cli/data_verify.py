"""``masnn data verify ROOT``: check a user's DVS128 Gesture directory and say what is wrong.

Checks (IBM release): both trial lists exist and list 98 / 24 files, every listed ``.aedat``
and ``_labels.csv`` exists, every CSV parses (header, three integer columns, ``end >= start``,
class 1..11), per-split sample counts against 1176 / 288, and overlapping label rows (the known
``user22_led`` quirk is reported as such). ``--decode`` also reads every ``.aedat`` fully and
checks its time order (file and byte offset of the first backward step or hours-long jump) and
that every label row selects at least one event; otherwise only its version line is checked. Exit code 0 when nothing is wrong, 1 otherwise.

A masnn synthetic set (``masnn data synth-gesture``; it has a ``manifest.json`` naming the
generator) is checked against its own manifest instead: its file and sample counts, and the
size of every recording.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from masnn.cli.data import register_data_action
from masnn.data.checks import time_order_problem
from masnn.data.gesture import (
    EXPECTED_SAMPLES,
    EXPECTED_TRIALS,
    cut_trial,
    detect_layout,
    read_labels_csv,
    read_trial_list,
)
from masnn.errors import DataFormatError
from masnn.events.aedat import MAGIC_31, read_aedat
from masnn.events.schema import DVS128

KNOWN_OVERLAPS = {"user22_led"}


_R = TypeVar("_R")


def _synthetic_manifest(d: Path) -> tuple[dict[str, Any], dict[str, int], dict[str, int]] | None:
    """A masnn synthetic set's manifest and its per-split file and sample counts, else ``None``.

    Raises:
        DataFormatError: the manifest names the generator but cannot be read.
    """
    path = d / "manifest.json"
    if not path.is_file():
        return None
    try:
        man = json.loads(path.read_text())
        if "generator_version" not in man:
            return None
        counts = man["totals"]
        files = {s: int(counts["files"][s]) for s in ("train", "test")}
        samples = {s: int(counts["samples"][s]) for s in ("train", "test")}
        _ = [(f["file"], int(f["bytes"])) for f in man["files"]]  # well-formed file list
    except (ValueError, KeyError, TypeError) as e:
        raise DataFormatError(path, f"unreadable synthetic-set manifest ({e})") from e
    return man, files, samples


def verify_gesture(root: str | Path, decode: bool = False) -> tuple[list[str], list[str]]:
    """Return ``(problems, notes)`` for a DVS128 Gesture directory (IBM layout)."""
    problems: list[str] = []
    notes: list[str] = []
    try:
        layout, d = detect_layout(root)
    except DataFormatError as e:
        return [str(e)], notes
    if layout != "ibm":
        notes.append(f"{d}: {layout} layout (pre-processed); only the IBM release can be verified")
        return problems, notes
    try:
        synthetic = _synthetic_manifest(d)
    except DataFormatError as e:
        return [str(e)], notes
    expected_trials, expected_samples, what = EXPECTED_TRIALS, EXPECTED_SAMPLES, "full release"
    if synthetic is not None:
        from masnn.synth.dataset import GENERATOR_VERSION, recording_problems

        man, expected_trials, expected_samples = synthetic
        what = "manifest"
        notes.append(
            f"{d}: masnn synthetic set (generator {man['generator_version']}, seed "
            f"{man.get('seed')}), checked against its manifest"
        )
        if man["generator_version"] != GENERATOR_VERSION:
            notes.append(
                f"{d}: made by generator {man['generator_version']}, this masnn generates "
                f"{GENERATOR_VERSION} (the default synthetic set of `masnn train` is regenerated "
                "in its own directory; this one is still usable with data.dataset=dvs128_gesture)"
            )
        problems += recording_problems(d, man["files"])
    for split in ("train", "test"):
        listing = d / f"trials_to_{split}.txt"
        trials = _read_or_note(listing, read_trial_list, "missing trial list", problems)
        if trials is None:
            continue
        if len(trials) != expected_trials[split]:
            problems.append(
                f"{listing}: lists {len(trials)} trial files, the {what} has "
                f"{expected_trials[split]}"
            )
        samples = 0
        for trial in trials:
            aedat = d / trial
            ev = None
            csv = d / (trial[: -len(".aedat")] + "_labels.csv")
            if not aedat.is_file():
                problems.append(f"{aedat}: missing trial file (listed in {listing.name})")
            else:
                try:
                    if decode:
                        ev = read_aedat(aedat, sensor=DVS128)
                        order = time_order_problem(aedat, ev["t"], aedat=True)
                        if order:
                            problems.append(order)
                    else:
                        with open(aedat, "rb") as f:
                            first = f.readline().rstrip(b"\r\n")
                        if first != MAGIC_31:
                            problems.append(
                                f"{aedat}: first line {first[:20]!r}, expected {MAGIC_31!r}"
                            )
                except DataFormatError as e:
                    problems.append(str(e))
            rows = _read_or_note(csv, read_labels_csv, "missing label file", problems)
            if rows is None:
                continue
            samples += len(rows)
            if ev is not None:
                problems += _empty_rows(csv, rows, ev)
            by_start = np.argsort(rows[:, 1], kind="stable")
            r = rows[by_start]
            for a, b in zip(r[:-1], r[1:]):
                if a[2] > b[1]:
                    msg = (
                        f"{csv}: class {a[0]} ends at {a[2]} after class {b[0]} starts at {b[1]} "
                        "(overlapping samples share events)"
                    )
                    if csv.name[: -len("_labels.csv")] in KNOWN_OVERLAPS:
                        notes.append(msg + " - known quirk of the IBM release, kept as is")
                    else:
                        problems.append(msg)
        if samples != expected_samples[split]:
            problems.append(
                f"{d} [{split}]: {samples} labelled samples, the {what} gives "
                f"{expected_samples[split]}"
            )
        else:
            notes.append(f"{split}: {len(trials)} trial files, {samples} samples")
    return problems, notes


def _read_or_note(
    path: Path, read: Callable[[Path], _R], missing: str, problems: list[str]
) -> _R | None:
    """``read(path)``, or ``None`` with the problem noted (``missing`` file, unreadable file)."""
    if not path.is_file():
        problems.append(f"{path}: {missing}")
        return None
    try:
        return read(path)
    except DataFormatError as e:
        problems.append(str(e))
        return None


def _empty_rows(csv: Path, rows: np.ndarray, ev: np.ndarray) -> list[str]:
    """Label rows whose window selects no event of the decoded recording."""
    out = []
    span = f"{int(ev['t'].min())}..{int(ev['t'].max())} us" if ev.size else "no events"
    for k, s in enumerate(cut_trial(ev, rows)):
        if s.size == 0:
            c, a, b = (int(v) for v in rows[k])
            out.append(
                f"{csv}: row {k + 2} (class {c}, {a}..{b} us) selects no event; the recording "
                f"spans {span}"
            )
    return out


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "root",
        help="DVS128 Gesture directory (DvsGesture/ of the IBM release, or a masnn synthetic set)",
    )
    p.add_argument("--decode", action="store_true", help="fully decode every .aedat file (slow)")


@register_data_action(
    "verify",
    "Check a DVS128 Gesture directory (or a synthetic set) and say what is wrong.",
    _configure,
)
def run(args: argparse.Namespace) -> int:
    problems, notes = verify_gesture(args.root, decode=args.decode)
    for n in notes:
        print(f"ok: {n}")
    for p in problems:
        print(f"PROBLEM: {p}")
    print(
        f"{len(problems)} problem(s) found"
        if problems
        else "DVS128 Gesture directory looks complete"
    )
    return 1 if problems else 0
