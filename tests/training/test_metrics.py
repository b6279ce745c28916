"""metrics.json and training_curves.png (homework/training/metrics.py): what is recorded and what is plotted."""

import json
import math
import sys

import pytest

from homework.training import metrics
from homework.training.health import StepRecord


def _records():
    return [StepRecord(1, 2.0, 0.5, 1e-3, 10, 40, 0.5), StepRecord(2, float("nan"), None, 1e-3),
            StepRecord(3, 0.5, float("inf"), 5e-4)]


def test_metrics_json_holds_the_given_fields_then_every_step(tmp_path):
    path = metrics.write_metrics(tmp_path, _records()[:1] + [{"step": 9, "loss": 1.0}], train_seconds=3.5, model="m")
    assert path == tmp_path / "metrics.json"
    saved = json.loads(path.read_text())
    assert list(saved) == ["train_seconds", "model", "steps"]
    assert (saved["train_seconds"], saved["model"]) == (3.5, "m")
    assert saved["steps"][0] == {"step": 1, "loss": 2.0, "grad_norm": 0.5, "learning_rate": 1e-3,
                                 "supervised_tokens": 10, "tokens": 40, "step_time_s": 0.5, "epoch": None,
                                 "tokens_per_s": 80.0}
    assert saved["steps"][1] == {"step": 9, "loss": 1.0}  # a plain dict is recorded as it is


def test_metrics_json_is_written_atomically(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(metrics, "atomic_write_json", lambda path, obj: written.append((path, obj)))
    metrics.write_metrics(tmp_path, [], train_seconds=1.0)
    assert written == [(tmp_path / "metrics.json", {"train_seconds": 1.0, "steps": []})]


@pytest.fixture
def plotted(monkeypatch):
    """The figure plot_curves draws, kept open for inspection (and not rendered: that takes the time)."""
    import matplotlib.pyplot as plt

    figures = []
    real_subplots = plt.subplots

    def keep(*args, **kwargs):
        fig, axes = real_subplots(*args, **kwargs)
        fig.savefig = lambda buf, format, dpi: buf.write(f"a {format} figure".encode())
        fig.tight_layout = lambda: None
        figures.append(fig)
        return fig, axes

    monkeypatch.setattr(plt, "subplots", keep)
    yield figures
    for fig in figures:
        plt.close(fig)


def test_curves_plot_loss_grad_norm_and_learning_rate_per_step(tmp_path, plotted):
    import matplotlib.pyplot as plt

    path = metrics.plot_curves(tmp_path, _records(), title="SFT run")
    assert path == tmp_path / "training_curves.png" and path.read_bytes() == b"a png figure"
    [fig] = plotted
    loss, grad, lr = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["loss", "grad norm", "learning rate"]
    assert all(ax.get_xlabel() == "optimizer step" for ax in fig.axes)
    assert fig._suptitle.get_text() == "SFT run"
    for ax in fig.axes:
        [line] = ax.get_lines()
        assert list(line.get_xdata()) == [1, 2, 3]
    assert list(lr.get_lines()[0].get_ydata()) == [1e-3, 1e-3, 5e-4]
    # the loss spans orders of magnitude: a log axis; the others are linear
    assert (loss.get_yscale(), grad.get_yscale(), lr.get_yscale()) == ("log", "linear", "linear")
    assert not plt.fignum_exists(fig.number)  # closed once saved: a long session of plots keeps no figures


def test_a_missing_or_non_finite_value_is_plotted_as_a_gap(tmp_path, plotted):
    metrics.plot_curves(tmp_path, _records())
    loss, grad, _ = (ax.get_lines()[0].get_ydata() for ax in plotted[0].axes)
    assert loss[0] == 2.0 and math.isnan(loss[1]) and loss[2] == 0.5
    assert grad[0] == 0.5 and math.isnan(grad[1]) and math.isnan(grad[2])  # None and inf alike
    assert plotted[0]._suptitle.get_text() == "training"


def test_curves_of_plain_dicts_are_plotted_too(tmp_path, plotted):
    metrics.plot_curves(tmp_path, [r.as_dict() for r in _records()])
    assert list(plotted[0].axes[2].get_lines()[0].get_ydata()) == [1e-3, 1e-3, 5e-4]


def test_the_png_is_written_atomically(tmp_path, monkeypatch, plotted):
    written = []
    monkeypatch.setattr(metrics, "atomic_write_bytes", lambda path, data: written.append((path, data)))
    metrics.plot_curves(tmp_path, _records())
    assert written == [(tmp_path / "training_curves.png", b"a png figure")] and list(tmp_path.iterdir()) == []


def test_no_records_or_no_matplotlib_plots_nothing(tmp_path, monkeypatch):
    assert metrics.plot_curves(tmp_path, []) is None
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert metrics.plot_curves(tmp_path, _records()) is None
    assert list(tmp_path.iterdir()) == []
