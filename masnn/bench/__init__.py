"""Benchmarks of masnn against its peers (SpikingJelly, snnTorch, Norse): ``masnn bench``.

Peers are benchmark-only dependencies, imported only by the rows that use them (install them
as ``BENCHMARKS.md`` says). Every row runs in a fresh process (:mod:`masnn.bench.runner`).
"""

from masnn.bench.rows import Row, measure
from masnn.bench.runner import format_tables, rows, run_row

__all__ = ["Row", "format_tables", "measure", "rows", "run_row"]
