"""Record what SpikingJelly 2.0.0's ``load_aedat_v3`` reads from the cross-read fixture.

Run: ``python tests/golden/make_aedat_golden.py`` (needs ``pip install --no-deps
spikingjelly==2.0.0``; its unrelated extras are replaced by placeholders, see
``_thirdparty.py``). Writes ``tests/golden/aedat_spikingjelly.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "events")]

from _thirdparty import spikingjelly_utils  # noqa: E402
from aedat_bytes import crossread_fixture  # noqa: E402


def main() -> None:
    sj = spikingjelly_utils()
    if sj is None:
        raise SystemExit("spikingjelly is not installed: pip install --no-deps spikingjelly==2.0.0")
    import spikingjelly

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fixture.aedat"
        path.write_bytes(crossread_fixture())
        out = sj.load_aedat_v3(str(path))
    golden = {
        "producer": f"spikingjelly {getattr(spikingjelly, '__version__', '2.0.0')} "
        "datasets.utils.load_aedat_v3",
        "fixture": "tests/events/aedat_bytes.py::crossread_fixture",
        **{k: [int(v) for v in out[k]] for k in ("t", "x", "y", "p")},
    }
    (HERE / "aedat_spikingjelly.json").write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {len(golden['t'])} events")


if __name__ == "__main__":
    main()
