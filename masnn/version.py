"""Single source of the masnn version (read by pyproject via hatch)."""

__version__ = "0.1.0.dev0"
