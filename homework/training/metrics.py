"""metrics.json and training_curves.png next to the adapter."""

from __future__ import annotations

import io
import math
from pathlib import Path

from ..runtime.atomic import atomic_write_bytes, atomic_write_json


def write_metrics(directory: Path, records: list, **extra) -> Path:
    path = Path(directory) / "metrics.json"
    atomic_write_json(path, {**extra, "steps": [r.as_dict() if hasattr(r, "as_dict") else r for r in records]})
    return path


def plot_curves(directory: Path, records: list, title: str = "training") -> Path | None:
    """Loss, grad norm and learning rate per step; None if matplotlib is unavailable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    recs = [r.as_dict() if hasattr(r, "as_dict") else r for r in records]
    if not recs:
        return None
    steps = [r["step"] for r in recs]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))  # pragma: no mutate -- layout only; what is plotted is tested
    for ax, key, label in zip(axes, ("loss", "grad_norm", "learning_rate"), ("loss", "grad norm", "learning rate")):
        ys = [r[key] if r[key] is not None and math.isfinite(r[key]) else float("nan") for r in recs]
        ax.plot(steps, ys, lw=1)
        ax.set_xlabel("optimizer step")
        ax.set_title(label)
        ax.grid(alpha=0.3)  # pragma: no mutate -- layout only; what is plotted is tested
    axes[0].set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()  # pragma: no mutate -- layout only; what is plotted is tested
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    path = Path(directory) / "training_curves.png"
    atomic_write_bytes(path, buf.getvalue())
    return path
