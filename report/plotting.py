"""Matplotlib with the Agg backend, and a save that writes the same bytes for the same figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "font.size": 9, "axes.grid": False,
                     "svg.hashsalt": "convlab"})

__all__ = ["plt", "save"]


def save(fig, path: Path) -> Path:
    """Save as PNG with no software/date metadata, then close the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
