"""The real-format fixtures of the training tests, shared with the export tests."""

from tests.train.conftest import gesture_root  # noqa: F401  (a session-scoped fixture)
