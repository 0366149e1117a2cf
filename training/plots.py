"""PNG figures for trial pages (matplotlib's Agg backend: no display, safe in workers)."""

import io
from collections.abc import Sequence
from typing import Protocol


class EpochLike(Protocol):
    epoch: int
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None


def confusion_png(confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    """A confusion matrix (rows: true class, columns: predicted), counts in each cell."""
    figure = _figure(6, 5)
    axes = figure.add_subplot()
    image = axes.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axes)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    top = max((max(row) for row in confusion), default=0)
    for row, counts in enumerate(confusion):
        for column, count in enumerate(counts):
            color = "white" if count > top / 2 else "black"
            axes.text(column, row, str(count), ha="center", va="center", color=color, fontsize=8)
    return _png(figure)


def learning_curves_png(epochs: Sequence[EpochLike]) -> bytes:
    """Loss and accuracy per epoch, training and validation side by side."""
    figure = _figure(10, 4)
    numbers = [row.epoch for row in epochs]
    for position, (metric, title) in enumerate((("loss", "loss"), ("accuracy", "accuracy")), start=1):
        axes = figure.add_subplot(1, 2, position)
        axes.plot(numbers, [getattr(row, metric) for row in epochs], label="training")
        validation = [getattr(row, f"val_{metric}") for row in epochs]
        if any(value is not None for value in validation):
            axes.plot(numbers, [float("nan") if v is None else v for v in validation], label="validation")
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.legend()
    return _png(figure)


def _figure(width: float, height: float):
    # The object API with Agg's canvas: pyplot's global state is not thread-safe in a web process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), tight_layout=True)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
