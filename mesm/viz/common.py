"""Shared plotting plumbing: a headless pyplot, imported lazily."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (works on headless machines)."""
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - matplotlib is a core dependency
        raise ImportError("figures need matplotlib: `uv sync` installs it") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
