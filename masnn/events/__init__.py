"""Stage 1: raw events (numpy only): the event layout, sensor geometry and file readers/writers."""

from masnn.events.aedat import read_aedat, write_aedat
from masnn.events.schema import DVS128, EVENT_DTYPE, SensorSize, make_events, validate_events

__all__ = [
    "DVS128",
    "EVENT_DTYPE",
    "SensorSize",
    "make_events",
    "read_aedat",
    "validate_events",
    "write_aedat",
]
