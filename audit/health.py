"""Dataset health beyond labels: exact and near duplicates, copies across batches, and images that
are no use as faces. Pure functions over arrays, so that a project's check and `bench_health` run
the same code.

Why these measures (FER2013 train + validation, 32,298 images, figures in the README):
- *Exact* duplicates share the digest of their decoded pixels (mode and size included), so a copy
  saved again losslessly or under another name is found, and two files that only share a name are
  not.
- *Near* duplicates are within NEAR_BITS of each other in imagehash's 64-bit perceptual hash. In
  FER2013, whose copies of one photo differ in contrast, sampled pairs 2 and 4 bits apart were the
  same photo 16 times in 16, pairs 6 bits apart 7 in 8 and pairs 8 bits apart 2 in 8. A JPEG saved
  again at quality 60, a contrast change and a resize to 40 px and back stay within 4 bits (99th
  percentile 2 bits); a shift by one pixel moves 8 and is not caught.
- Groups are the connected components of "is a copy of", so a chain of near copies is one group.
  Neighbours come from scikit-learn's chunked nearest-neighbour search (the squared Euclidean
  distance between 0/1 vectors is the Hamming distance): memory grows with n, never with n x n.
- *Unusable*: blank (grey levels barely vary: FER2013's 12 blank images have a spread under 1
  grey level, its faces above 30), no face found in a photo (the labeling's whole-image
  fallback), or an outlier far from every class in the model's feature space (see OUTLIER_Z).
"""

import hashlib
from dataclasses import dataclass

import numpy as np

NEAR_BITS = 4
# Nearest neighbours looked at per image; more copies than this are still joined through chains.
NEIGHBOURS = 8
BLANK_STD = 2.0
# Robust z-score (median and MAD of log distances) above which an image's distance to the nearest
# class centre in feature space makes it an outlier; measured against FER+'s "not a face" votes.
OUTLIER_Z = 3.5

BLANK = "blank"
NO_FACE = "no_face"
OUTLIER = "outlier"


@dataclass(frozen=True)
class Fingerprint:
    digest: str  # sha1 of the decoded pixels, mode and size
    phash: bytes  # 8 bytes: imagehash's 64-bit perceptual hash
    spread: float  # standard deviation of the grey levels


@dataclass(frozen=True)
class Groups:
    group: np.ndarray  # per image: its group's number, -1 when it has no copy
    exact: np.ndarray  # per group: True when every member has the same pixels

    @property
    def count(self) -> int:
        return len(self.exact)


def fingerprint(picture) -> Fingerprint:
    """The digest, perceptual hash and grey-level spread of a decoded PIL image."""
    import imagehash

    pixels = np.asarray(picture)
    # A content digest, not a security measure: sha1 is fast and collisions are no threat here.
    digest = hashlib.sha1(f"{picture.mode}:{picture.size}:".encode(), usedforsecurity=False)
    digest.update(np.ascontiguousarray(pixels).tobytes())
    grey = picture if picture.mode == "L" else picture.convert("L")
    bits = imagehash.phash(grey).hash.ravel()
    return Fingerprint(digest.hexdigest(), np.packbits(bits).tobytes(), float(np.asarray(grey).std()))


def duplicate_groups(digests: list[str], hashes: list[bytes], near_bits: int = NEAR_BITS) -> Groups:
    """Groups of exact and near copies, numbered in the order of their first member."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    count = len(digests)
    # Every image is joined to the first image with its digest, and to its near neighbours.
    first: dict[str, int] = {}
    rows = [np.arange(count)]
    cols = [np.array([first.setdefault(digest, n) for n, digest in enumerate(digests)], np.int64)]
    if near_bits > 0 and count > 1:
        near_rows, near_cols = _near_pairs(hashes, near_bits)
        rows.append(near_rows)
        cols.append(near_cols)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component, minlength=count)
    group = np.full(count, -1, np.int64)
    numbers: dict[int, int] = {}
    for n in np.flatnonzero(sizes[component] > 1):
        group[n] = numbers.setdefault(int(component[n]), len(numbers))
    exact = np.ones(len(numbers), bool)
    first_digest: dict[int, str] = {}
    for n in np.flatnonzero(group >= 0):
        if first_digest.setdefault(int(group[n]), digests[n]) != digests[n]:
            exact[group[n]] = False
    return Groups(group, exact)


def _near_pairs(hashes: list[bytes], near_bits: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    bits = np.unpackbits(np.frombuffer(b"".join(hashes), np.uint8).reshape(len(hashes), -1), axis=1)
    bits = bits.astype(np.float32)
    index = NearestNeighbors(n_neighbors=min(NEIGHBOURS + 1, len(hashes)), algorithm="brute")
    distance, neighbour = index.fit(bits).kneighbors(bits)
    rows, slots = np.nonzero(np.rint(distance**2) <= near_bits)
    return rows, neighbour[rows, slots]


def group_flags(groups: Groups, labels: list[list[str]], batches: list) -> tuple[np.ndarray, np.ndarray]:
    """Per group: conflicting (its members carry different labels in any of the label lists given,
    e.g. original and final; empty labels do not count) and cross-batch (members in more than one
    batch: a test set leaking into a training set)."""
    conflicting = np.zeros(groups.count, bool)
    cross = np.zeros(groups.count, bool)
    seen_labels: list[dict[int, str]] = [{} for _ in labels]
    seen_batch: dict[int, object] = {}
    for n in np.flatnonzero(groups.group >= 0):
        g = int(groups.group[n])
        for seen, column in zip(seen_labels, labels, strict=True):
            if column[n] and seen.setdefault(g, column[n]) != column[n]:
                conflicting[g] = True
        if seen_batch.setdefault(g, batches[n]) != batches[n]:
            cross[g] = True
    return conflicting, cross


def outliers(features: np.ndarray, labels: np.ndarray, z: float = OUTLIER_Z) -> np.ndarray:
    """True where an image is far from the centre of every class in feature space.

    The distance is Mahalanobis under one covariance shared by the classes (Ledoit-Wolf shrunk, so
    that a few hundred images are enough), as in Lee et al. 2018's detector of inputs unlike the
    training data. The cut is relative (a robust z-score of the log distance), so it does not
    depend on the model's feature scale.
    """
    from sklearn.covariance import LedoitWolf

    if len(features) < 10:
        return np.zeros(len(features), bool)
    features = np.asarray(features, np.float64)
    classes = np.unique(labels)
    centres = np.stack([features[labels == c].mean(axis=0) for c in classes])
    centred = features - centres[np.searchsorted(classes, labels)]
    precision = LedoitWolf().fit(centred).precision_
    nearest = np.full(len(features), np.inf)
    for centre in centres:
        offset = features - centre
        nearest = np.minimum(nearest, np.einsum("ij,jk,ik->i", offset, precision, offset))
    distance = np.log(np.sqrt(np.maximum(nearest, 1e-12)))
    median = np.median(distance)
    spread = np.median(np.abs(distance - median)) * 1.4826 or 1e-12
    return (distance - median) / spread > z


def unusable_reasons(spreads: np.ndarray, no_face: np.ndarray, outlier: np.ndarray) -> list[str]:
    """Each image's reason for being no use as a face ("" when usable), the plainest reason first."""
    reasons = np.where(outlier, OUTLIER, "")
    reasons = np.where(no_face, NO_FACE, reasons)
    reasons = np.where(np.asarray(spreads) < BLANK_STD, BLANK, reasons)
    return reasons.tolist()
