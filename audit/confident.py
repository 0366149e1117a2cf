"""Confident learning (Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 2021) on NumPy: which given labels are likely wrong, and what they should be.

Inputs are `labels`, the given (possibly wrong) class index of each example, and `probs`, an
(n, K) array of out-of-sample predicted probabilities. Nothing here knows about Django.

Written from the paper; cleanlab (AGPL) is only used by the test suite, to check that both agree.
"""

from dataclasses import dataclass

import numpy as np

# A threshold no probability reaches: a class nobody labeled is never a confident guess.
ABSENT_CLASS_THRESHOLD = 2.0
# Probabilities are compared with a little slack, so an example exactly at its class mean counts.
SLACK = 1e-6
# The share of wrong labels assumed before looking at the images, for deciding which suggestions
# are safe to take without a person (FER2013's own error rate is estimated at about one in ten).
PRIOR_NOISE_RATE = 0.10


@dataclass(frozen=True)
class Audit:
    thresholds: np.ndarray  # (K,) mean predicted probability of class k over examples labeled k
    confident_joint: np.ndarray  # (K, K) counts, [given][likely true], before calibration
    calibrated_joint: np.ndarray  # (K, K) counts whose rows sum to the label counts
    joint: np.ndarray  # (K, K) estimated P(given = i, true = j), sums to 1
    noise_rates: np.ndarray  # (K,) estimated share of examples labeled k whose true class differs
    label_quality: np.ndarray  # (n,) self-confidence: the probability of the given label
    issues: np.ndarray  # (n,) bool, likely mislabeled
    suggested: np.ndarray  # (n,) most likely other class, -1 where not flagged
    confident: np.ndarray  # (n,) bool, flagged and the suggestion is safe to take without review


def per_class_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    k = probs.shape[1]
    thresholds = np.full(k, ABSENT_CLASS_THRESHOLD)
    for cls in range(k):
        mine = labels == cls
        if mine.any():
            thresholds[cls] = probs[mine, cls].mean()
    # A threshold of zero would make every example confident for that class.
    return np.maximum(thresholds, 2 * SLACK)


def confident_joint(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Count each example under (given label, likely true label), where the likely true label is
    the most probable of the classes whose probability reaches their own threshold; examples
    reaching no threshold are not counted."""
    k = probs.shape[1]
    above = probs >= thresholds - SLACK
    counted = above.any(axis=1)
    likely_true = np.where(above, probs, -1.0).argmax(axis=1)
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (labels[counted], likely_true[counted]), 1)
    # A class that is never confidently itself would otherwise make its whole row noise.
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    return joint


def calibrate(joint: np.ndarray, label_counts: np.ndarray) -> np.ndarray:
    """Scale each row to the number of examples with that given label (the confident joint only
    counts the confident ones), rounded to whole examples without changing row totals."""
    rows = joint.sum(axis=1, keepdims=True).astype(float)
    scaled = joint / np.maximum(rows, 1e-300) * label_counts[:, None]
    return np.array([_round_keeping_sum(row) for row in scaled], dtype=np.int64)


def _round_keeping_sum(values: np.ndarray) -> np.ndarray:
    floors = np.floor(values)
    short = round(values.sum() - floors.sum())
    # The largest remainders get the missing units.
    order = np.argsort(-(values - floors), kind="stable")
    floors[order[:short]] += 1
    return floors


def prune_by_noise_rate(labels: np.ndarray, probs: np.ndarray, calibrated: np.ndarray) -> np.ndarray:
    """Among examples labeled i, flag the calibrated[i][j] ones with the largest margin
    p_j - p_i for each other class j; then drop flags where the given label is still the most
    probable class (a low-confidence but right label is not an error)."""
    issues = np.zeros(len(labels), dtype=bool)
    k = probs.shape[1]
    for given in range(k):
        members = np.flatnonzero(labels == given)
        if len(members) <= 1:
            continue
        prune = _keep_one(calibrated[given], given, len(members))
        for true in range(k):
            if true == given or prune[true] <= 0:
                continue
            margin = probs[members, true] - probs[members, given]
            issues[members[np.argsort(-margin, kind="stable")[: prune[true]]]] = True
    nudged = probs.copy()
    nudged[np.arange(len(labels)), labels] += SLACK
    issues[nudged.argmax(axis=1) == labels] = False
    return issues


def _keep_one(row: np.ndarray, given: int, members: int) -> np.ndarray:
    """The prune counts of one given class, scaled down so at least one example keeps its label."""
    off = row.astype(float)
    off[given] = 0
    total = off.sum()
    if total > members - 1:
        off = _round_keeping_sum(off * (members - 1) / total)
    return off.astype(np.int64)


def audit(labels, probs, prior_noise: float = PRIOR_NOISE_RATE) -> Audit:
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(labels) != len(probs):
        raise ValueError("probs must be (n, K) with one row per label")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError("labels must be class indices below K")
    k = probs.shape[1]
    counts = np.bincount(labels, minlength=k)
    thresholds = per_class_thresholds(labels, probs)
    raw = confident_joint(labels, probs, thresholds)
    calibrated = calibrate(raw, counts)
    joint = calibrated / max(calibrated.sum(), 1)
    rows = calibrated.sum(axis=1)
    noise_rates = np.divide(rows - calibrated.diagonal(), rows, out=np.zeros(k), where=rows > 0)
    quality = probs[np.arange(len(labels)), labels] if len(labels) else np.zeros(0)
    issues = prune_by_noise_rate(labels, probs, calibrated)
    others = probs.copy()
    others[np.arange(len(labels)), labels] = -1.0
    best_other = others.argmax(axis=1) if len(labels) else np.zeros(0, dtype=np.int64)
    suggested = np.where(issues, best_other, -1)
    confident = issues & _suggestion_is_likelier(labels, probs, best_other, prior_noise)
    return Audit(thresholds, raw, calibrated, joint, noise_rates, quality, issues, suggested, confident)


def _suggestion_is_likelier(labels, probs, suggested, prior_noise: float) -> np.ndarray:
    """True where the suggested class is a likelier true class than the given one by Bayes' rule,
    P(true=j | x, given=i) ∝ P(given=i | true=j) p(j | x), with a prior in which a share
    `prior_noise` of labels is wrong, spread evenly over the other classes.

    Why not the confident joint's own noise estimate: it counts the model's mistakes as label
    errors too, so with a model right two times in three it estimates 40 % noise on a clean
    dataset and would replace many right labels. The prior makes a change need strong evidence:
    at 10 % noise over 7 classes, the suggestion must be 54 times as probable as the given label.
    """
    k = probs.shape[1]
    odds_needed = (1 - prior_noise) * (k - 1) / prior_noise
    rows = np.arange(len(labels))
    return probs[rows, suggested] > odds_needed * probs[rows, labels]
