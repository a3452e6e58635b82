"""Pictures for the report, as ``data:`` URIs: sample grids, training curves, and PNGs found on disk.

Every image is embedded in the page (base64), so the report is one file that opens anywhere and
fetches nothing. Large pictures are scaled down and small ones (28-pixel images) scaled up, so a
page stays a few megabytes and every tile can be seen.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from privmed.data.dataset import ImageDataset
from privmed.data.grids import pair_grid

MAX_WIDTH = 960
"""Widest picture embedded, in pixels: wider ones are scaled down."""
MIN_TILE = 96
"""Tiles narrower than this are enlarged by a whole factor (nearest neighbour, pixels stay sharp)."""

_LOSS_HINTS = ("loss", "wasserstein", "bits_per_dim", "nll")
_NOT_PLOTTED = {"epoch", "step", "seconds", "epsilon"}


def png_uri(data: bytes) -> str:
    """A ``data:image/png;base64,...`` URI for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _fit(image: Image.Image, max_width: int) -> Image.Image:
    if image.width <= max_width:
        return image
    height = max(1, round(image.height * max_width / image.width))
    return image.resize((max_width, height), Image.Resampling.LANCZOS)


def file_uri(path: Path, max_width: int = MAX_WIDTH) -> str:
    """A PNG (or any image PIL reads) from disk as a data URI: narrower than 3 tiles enlarged, wider than ``max_width`` reduced."""
    with Image.open(path) as source:
        image = source.convert("RGBA" if source.mode in ("RGBA", "LA", "P") else "RGB")
    if image.width < 3 * MIN_TILE:
        scale = math.ceil(3 * MIN_TILE / image.width)
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    return png_uri(_png_bytes(_fit(image, max_width)))


def grid_uri(data: ImageDataset, n: int = 16, columns: int = 4, max_width: int = MAX_WIDTH) -> str:
    """A grid of the first ``n`` records (image beside label when there are labels) as a data URI."""
    grid = pair_grid(data, n=n, columns=columns)
    tile = max(data.spatial_shape[-2:])
    scale = max(1, math.ceil(MIN_TILE / tile)) if tile < MIN_TILE else 1
    if scale > 1:
        grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    return png_uri(_png_bytes(_fit(Image.fromarray(grid), max_width)))


def training_curves_uri(rows: list[dict[str, float]], columns: list[str], target_epsilon: float | None = None) -> str | None:
    """Losses, epsilon spent and the other metrics of a metrics.csv over steps (or epochs), as one PNG.

    Returns None when there is nothing to draw (no rows, or no numeric column besides the x axis).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_name = "step" if "step" in columns else "epoch" if "epoch" in columns else None
    if not rows:
        return None
    x = np.array([row[x_name] for row in rows]) if x_name else np.arange(1, len(rows) + 1, dtype=float)
    drawable = [c for c in columns if c not in _NOT_PLOTTED and np.isfinite([row[c] for row in rows]).any()]
    panels = [
        ("losses", [c for c in drawable if any(hint in c for hint in _LOSS_HINTS)]),
        ("epsilon spent", [c for c in ("epsilon",) if c in columns and np.isfinite([row[c] for row in rows]).any()]),
    ]
    panels.append(("other metrics", [c for c in drawable if c not in panels[0][1]]))
    panels = [(title, names) for title, names in panels if names]
    if not panels:
        return None
    marker = "o" if len(rows) <= 20 else None
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), dpi=100, squeeze=False)
    for axis, (title, names) in zip(axes[0], panels):
        for name in names:
            axis.plot(x, [row[name] for row in rows], marker=marker, markersize=3, linewidth=1.4, label=name)
        if title == "epsilon spent" and target_epsilon is not None and math.isfinite(target_epsilon):
            axis.axhline(target_epsilon, color="black", linestyle="--", linewidth=1.0, label=f"budget {target_epsilon:g}")
            axis.set_ylim(bottom=0)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel(x_name or "row")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return png_uri(buffer.getvalue())
