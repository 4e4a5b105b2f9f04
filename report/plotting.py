"""Matplotlib with the Agg backend, and a save that writes the same bytes for the same figure, with
every title wrapped to fit inside the figure."""
from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "font.size": 9, "axes.grid": False,
                     "svg.hashsalt": "convlab"})

log = logging.getLogger(__name__)

__all__ = ["plt", "save", "fit_titles", "titles_outside"]

MARGIN_PX = 2  # a title closer than this to the figure's edge counts as cut off


def _titles(fig) -> list:
    """(text artist, width in pixels it may take) of the suptitle and every axes' titles."""
    width = fig.bbox.width - 2 * MARGIN_PX
    found = [(fig._suptitle, width)] if fig._suptitle is not None else []
    for ax in fig.axes:
        room = min(width, ax.get_window_extent().width * 1.15)  # a little past the axes, never past the figure
        for text in (ax.title, ax._left_title, ax._right_title):
            if text.get_text():
                found.append((text, room))
    return found


def fit_titles(fig) -> None:
    """Wrap every title that is wider than its room onto more lines (at word boundaries)."""
    renderer = fig.canvas.get_renderer()
    for text, room in _titles(fig):
        words = " ".join(text.get_text().split())
        width = text.get_window_extent(renderer).width
        if width <= room or not words:
            continue
        chars = max(12, int(len(words) * room / width) - 1)
        while chars > 12:
            text.set_text(textwrap.fill(words, chars))
            if text.get_window_extent(renderer).width <= room:
                break
            chars -= 2


def titles_outside(fig) -> list[str]:
    """The titles whose drawn extent does not lie inside the figure (what a reader would see cut off)."""
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()
    frame = fig.bbox
    outside = []
    for text, _ in _titles(fig):
        box = text.get_window_extent(renderer)
        if (box.x0 < frame.x0 + MARGIN_PX - 1 or box.x1 > frame.x1 - MARGIN_PX + 1
                or box.y0 < frame.y0 or box.y1 > frame.y1):
            outside.append(text.get_text())
    return outside


def layout(fig) -> None:
    """Wrap long titles, then lay the figure out so titles, labels and ticks stay inside it."""
    fit_titles(fig)
    fig.tight_layout()
    fit_titles(fig)  # the axes may have narrowed
    fig.tight_layout()


def save(fig, path: Path) -> Path:
    """Lay out, save as PNG with no software/date metadata, then close the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layout(fig)
    cut = titles_outside(fig)
    if cut:
        log.warning("%s: title(s) reach past the figure's edge: %s", path, cut)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
