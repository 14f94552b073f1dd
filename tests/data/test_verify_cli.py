"""``masnn data verify`` on miniature IBM directories."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from masnn.cli.data_verify import verify_gesture
from tests.data.ibm_fixture import make_ibm


def test_reports_counts_missing_files_and_bad_csv(tmp_path: Path) -> None:
    root = make_ibm(tmp_path / "DvsGesture")
    problems, notes = verify_gesture(root)
    text = "\n".join(problems)
    assert "lists 2 trial files, the full release has 98" in text
    assert "lists 1 trial files, the full release has 24" in text
    assert "6 labelled samples, the full release gives 1176" in text
    (root / "user02_led.aedat").unlink()
    (root / "user24_lab_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,5,2\n")
    problems, _ = verify_gesture(root)
    text = "\n".join(problems)
    assert "user02_led.aedat: missing trial file" in text
    assert "user24_lab_labels.csv @ byte 34: row 2: end 2 < start 5" in text


def test_overlap_known_quirk_vs_other(tmp_path: Path) -> None:
    rows = [(9, 100, 5_000), (10, 4_000, 8_000)]
    root = make_ibm(
        tmp_path / "DvsGesture", train={"user22_led": rows, "user03_led": rows}, test={}
    )
    problems, notes = verify_gesture(root)
    assert any("user22_led_labels.csv" in n and "known quirk" in n for n in notes)
    assert any("user03_led_labels.csv" in p and "overlapping" in p for p in problems)
    assert not any("user22_led_labels.csv" in p for p in problems)


def test_cli_exit_code(tmp_path: Path) -> None:
    root = make_ibm(tmp_path / "DvsGesture")
    r = subprocess.run(
        [sys.executable, "-m", "masnn", "data", "verify", str(root), "--decode"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert "PROBLEM:" in r.stdout and "full release has 98" in r.stdout
