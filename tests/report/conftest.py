"""The tiny real-format gesture set of the training tests, for the report's end-to-end test."""

from tests.train.conftest import gesture_root  # noqa: F401  (re-exported fixture)
