"""Crowd votes (FER+: ten people per face) and how a label is scored against them.

The product promises to sort faces by what people see; these votes are the measure of it. The
same definitions serve training (soft targets), `evaluate_model --votes` and `bench_audit --votes`:

- an image *counts* when its most-voted column is one of the seven emotions (a tie with contempt,
  unknown or not-a-face still counts);
- a label *agrees* when it has the most votes among the seven emotions (either side of a tie);
- a label's *annotator share* is the share of all the image's votes that chose it.
"""

import csv
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np

from projects.models import EMOTIONS

# votes.csv's columns, and facelabel's name for each emotion column.
COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
EMOTION_COLUMNS = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}
_EMOTION_INDEX = [COLUMNS.index(EMOTION_COLUMNS[emotion]) for emotion in EMOTIONS]


@dataclass(frozen=True)
class Votes:
    counts: np.ndarray  # (10,) float, in COLUMNS order

    @property
    def emotions(self) -> np.ndarray:
        """The seven emotions' votes, in EMOTIONS order."""
        return self.counts[_EMOTION_INDEX]

    @property
    def counts_as_emotion(self) -> bool:
        # Most-voted column is an emotion; a tie with a non-emotion column still counts.
        return self.counts.sum() > 0 and self.emotions.max() >= self.counts.max()

    @property
    def majority(self) -> str:
        """The most-voted emotion (the first in EMOTIONS order on a tie)."""
        return EMOTIONS[int(np.argmax(self.emotions))]

    def distribution(self) -> np.ndarray:
        """The votes over the seven emotions as probabilities (contempt, unknown, NF left out)."""
        emotions = self.emotions
        return (emotions / emotions.sum()).astype(np.float32)

    def agrees(self, label: str) -> bool:
        emotions = self.emotions
        return label in EMOTIONS and emotions[EMOTIONS.index(label)] >= emotions.max()

    def share(self, label: str) -> float:
        if label not in EMOTIONS:
            return 0.0
        return float(self.emotions[EMOTIONS.index(label)] / self.counts.sum())


def votes_key(path: str | PurePath) -> str:
    """The last two path parts, emotion folder / file name: how files and vote rows are matched.
    The folder is compared in lower case, as emotion folders are everywhere else."""
    parts = PurePath(str(path).replace("\\", "/")).parts
    if len(parts) < 2:
        return parts[-1] if parts else ""
    return f"{parts[-2].lower()}/{parts[-1]}"


def votes_read(path: str | Path) -> dict[str, Votes]:
    """votes.csv as {votes_key: Votes}; a ValueError names the first problem (missing file or
    column, a count that is not a number, a file named twice with different votes)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"votes file {path} does not exist")
    votes: dict[str, Votes] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in ("file", *COLUMNS) if name not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; expected file,{','.join(COLUMNS)}"
            )
        for line, row in enumerate(reader, start=2):
            try:
                counts = np.array([float(row[name] or 0) for name in COLUMNS])
            except ValueError:
                raise ValueError(f"{path} line {line}: vote counts must be numbers") from None
            if (counts < 0).any() or not np.isfinite(counts).all():
                raise ValueError(f"{path} line {line}: vote counts must be finite and not negative")
            key = votes_key(row["file"])
            if key in votes and not np.array_equal(votes[key].counts, counts):
                raise ValueError(f"{path} line {line}: {key} is named twice with different votes")
            votes[key] = Votes(counts)
    return votes


@dataclass
class CrowdScore:
    """How well a set of labels agrees with the crowd, over the images that count."""

    counted: int = 0
    agreeing: int = 0
    share_sum: float = 0.0
    non_emotion: int = 0  # matched, but the crowd's most-voted column is not an emotion
    unmatched: int = 0  # no vote row

    def add(self, votes: Votes | None, label: str) -> None:
        if votes is None:
            self.unmatched += 1
        elif not votes.counts_as_emotion:
            self.non_emotion += 1
        else:
            self.counted += 1
            self.agreeing += votes.agrees(label)
            self.share_sum += votes.share(label)

    @property
    def agreement(self) -> float:
        return self.agreeing / self.counted if self.counted else 0.0

    @property
    def annotator_share(self) -> float:
        return self.share_sum / self.counted if self.counted else 0.0


@dataclass(frozen=True)
class CrowdEvaluation:
    score: CrowdScore
    ece: float  # expected calibration error of the confidence against agreeing with the crowd
    recall: dict[str, float]  # per crowd-majority class: share of its images whose label agrees
    support: dict[str, int]
    confusion: list[list[int]]  # rows: the crowd's majority, columns: the label given


def crowd_evaluate(
    keys: list[str], labels: list[str], votes: dict[str, Votes], confidences: np.ndarray | None = None
) -> CrowdEvaluation:
    """Score labels (one per file key) against the crowd; `confidences` (the probability the
    model gave its label) add the expected calibration error."""
    score = CrowdScore()
    size = len(EMOTIONS)
    confusion = np.zeros((size, size), np.int64)
    agreeing = np.zeros(size, np.int64)
    counted_confidences, counted_agree = [], []
    for index, (key, label) in enumerate(zip(keys, labels, strict=True)):
        crowd = votes.get(key)
        score.add(crowd, label)
        if crowd is None or not crowd.counts_as_emotion or label not in EMOTIONS:
            continue
        row = EMOTIONS.index(crowd.majority)
        confusion[row, EMOTIONS.index(label)] += 1
        agreeing[row] += crowd.agrees(label)
        if confidences is not None:
            counted_confidences.append(float(confidences[index]))
            counted_agree.append(crowd.agrees(label))
    support = confusion.sum(axis=1)
    return CrowdEvaluation(
        score=score,
        ece=expected_calibration_error(np.array(counted_confidences), np.array(counted_agree, bool)),
        recall={e: float(agreeing[i] / support[i]) if support[i] else 0.0 for i, e in enumerate(EMOTIONS)},
        support={e: int(support[i]) for i, e in enumerate(EMOTIONS)},
        confusion=confusion.tolist(),
    )


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Guo et al. (2017): the bin-weighted gap between confidence and accuracy, 15 equal-width bins."""
    if not len(confidences):
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidences, edges[1:-1], right=True), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap += members.mean() * abs(confidences[members].mean() - correct[members].mean())
    return float(gap)


def format_crowd_evaluation(evaluation: CrowdEvaluation) -> str:
    score = evaluation.score
    width = max(len(label) for label in EMOTIONS) + 2
    lines = [
        f"crowd_images: {score.counted} (left out: {score.non_emotion} mostly contempt/unknown/not-a-face, "
        f"{score.unmatched} without votes)",
        f"crowd_agreement: {score.agreement:.4f}",
        f"annotator_share: {score.annotator_share:.4f}",
        f"crowd_ece: {evaluation.ece:.4f}",
        "",
        f"{'crowd class':<{width + 4}}{'recall':>10}{'support':>10}",
    ]
    for label in EMOTIONS:
        lines.append(f"{label:<{width + 4}}{evaluation.recall[label]:>10.4f}{evaluation.support[label]:>10}")
    lines += ["", "crowd confusion matrix (rows: the crowd's majority, columns: predicted label)"]
    lines.append(" " * width + "".join(f"{label[:8]:>9}" for label in EMOTIONS))
    for label, row in zip(EMOTIONS, evaluation.confusion, strict=True):
        lines.append(f"{label:<{width}}" + "".join(f"{n:>9}" for n in row))
    return "\n".join(lines)
