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
- *Shifted* copies (a pixel or two moves pHash 8 bits and more) are found as well, and false
  merges avoided, by checking every hash neighbour within LOOSE_BITS: its 32-pixel grey
  thumbnail must correlate with the image's at SAME_PICTURE or more at some shift of up to SHIFT
  thumbnail pixels (Pearson, so contrast changes do not count). NEAR_BITS alone (without
  thumbnails) joined different faces: of FER2013's nearest pairs within 4 bits, 14 of the 24
  that correlate least (0.69-0.84) were different faces when looked at. Measured on FER2013
  train (28,709 images): copies shifted by 1 px are found 99.6% of the time, by 2 px 99.3%,
  shifted and saved at JPEG quality 60 99.6%, re-encoded alone 100%; of its nearest-hash pairs
  (8 per image) 2,970 pass, and 48 of 48 sampled from the lowest bands (correlation 0.90-0.95)
  were the same photo when looked at, while 5 of 24 between 0.85 and 0.90 were not. The model's penultimate
  features were measured for this too and rejected: they encode the expression, not the photo
  (at a cosine distance of 0.005, 6% of the pairs passing were different faces and only 16% of
  1-px shifts were found).
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
# Shifted copies: hash neighbours within LOOSE_BITS whose small grey thumbnails (THUMB_SIDE
# pixels square) correlate at SAME_PICTURE or more at some shift of up to SHIFT thumbnail pixels.
LOOSE_BITS = 20
THUMB_SIDE = 32
SHIFT = 2
SAME_PICTURE = 0.90
# The nearest-neighbour searches work through the distance matrix this many MB at a time, and
# the thumbnails of this many candidate pairs are compared at once (about 8 MB).
SEARCH_MB = 64
CORRELATION_CHUNK = 2048
# The dataset map: t-SNE fitted on this many images (a seeded sample), the rest placed on it.
MAP_SAMPLE = 10_000
MAP_DIMENSIONS = 50
MAP_CHUNK = 10_000
BLANK_STD = 2.0
# Robust z-score (median and MAD of log distances) above which an image's distance to the nearest
# class centre in feature space makes it an outlier; measured against FER+'s "not a face" votes.
OUTLIER_Z = 3.5

BLANK = "blank"
NO_FACE = "no_face"
OUTLIER = "outlier"


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """About 1.3 KB an image (a project's check holds one per image)."""

    digest: str  # sha1 of the decoded pixels, mode and size
    phash: bytes  # 8 bytes: imagehash's 64-bit perceptual hash
    spread: float  # standard deviation of the grey levels
    thumb: bytes  # THUMB_SIDE x THUMB_SIDE grey levels, row by row, for shifted copies


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
    thumb = grey.resize((THUMB_SIDE, THUMB_SIDE), _box_filter()).tobytes()
    return Fingerprint(digest.hexdigest(), np.packbits(bits).tobytes(), float(np.asarray(grey).std()), thumb)


def thumbnails(prints: list[Fingerprint]) -> np.ndarray:
    """(n, THUMB_SIDE, THUMB_SIDE) uint8: the fingerprints' thumbnails as one array."""
    return np.frombuffer(b"".join(p.thumb for p in prints), np.uint8).reshape(-1, THUMB_SIDE, THUMB_SIDE)


def _box_filter():
    from PIL import Image

    return Image.Resampling.BOX


def duplicate_groups(
    digests: list[str],
    hashes: list[bytes],
    near_bits: int = NEAR_BITS,
    thumbs: np.ndarray | None = None,
    blank: np.ndarray | None = None,
) -> Groups:
    """Groups of exact and near copies, numbered in the order of their first member. With
    `thumbs` ((n, THUMB_SIDE, THUMB_SIDE) grey levels), shifted copies join their groups too.
    Images marked `blank` are only ever exact copies: every flat picture has the same hash, so
    "near" would join all of them into one group."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    count = len(digests)
    # Every image is joined to the first image with its digest, and to its near neighbours.
    first: dict[str, int] = {}
    rows = [np.arange(count)]
    cols = [np.array([first.setdefault(digest, n) for n, digest in enumerate(digests)], np.int64)]
    if near_bits > 0 and count > 1:
        near_rows, near_cols = _near_pairs(hashes, near_bits, thumbs)
        if blank is not None:
            kept = ~(blank[near_rows] | blank[near_cols])
            near_rows, near_cols = near_rows[kept], near_cols[kept]
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


def _near_pairs(
    hashes: list[bytes], near_bits: int, thumbs: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    bits = np.unpackbits(np.frombuffer(b"".join(hashes), np.uint8).reshape(len(hashes), -1), axis=1)
    distance, neighbour = _neighbours(bits.astype(np.float32))
    # The squared Euclidean distance between 0/1 vectors is the Hamming distance.
    bits_apart = np.rint(distance**2)
    if thumbs is None:
        rows, slots = np.nonzero(bits_apart <= near_bits)
        return rows, neighbour[rows, slots]
    # With thumbnails every pair is checked, the closest hashes too: of FER2013's pairs within 4
    # bits, 14 of the 24 that correlated least (0.69-0.84) were different faces.
    rows, slots = np.nonzero((bits_apart <= LOOSE_BITS) & (neighbour != np.arange(len(bits))[:, None]))
    cols = neighbour[rows, slots]
    same = np.zeros(len(rows), bool)
    for start in range(0, len(rows), CORRELATION_CHUNK):
        part = slice(start, start + CORRELATION_CHUNK)
        same[part] = shifted_correlation(thumbs[rows[part]], thumbs[cols[part]]) >= SAME_PICTURE
    return rows[same], cols[same]


def shifted_correlation(first: np.ndarray, second: np.ndarray, shift: int = SHIFT) -> np.ndarray:
    """Per pair of (m, side, side) thumbnails: the largest Pearson correlation of their overlap
    over every shift of up to `shift` pixels each way (contrast and brightness changes do not
    count, as in FER2013's copies)."""
    side = first.shape[1]
    first, second = first.astype(np.float64), second.astype(np.float64)
    best = np.full(len(first), -1.0)
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            a = first[:, max(dy, 0) : side + min(dy, 0), max(dx, 0) : side + min(dx, 0)]
            b = second[:, max(-dy, 0) : side + min(-dy, 0), max(-dx, 0) : side + min(-dx, 0)]
            # Sums over the overlap (views, no copies): one pass each instead of centring copies.
            size = a.shape[1] * a.shape[2]
            sum_a, sum_b = a.sum(axis=(1, 2)), b.sum(axis=(1, 2))
            covariance = np.einsum("ijk,ijk->i", a, b) - sum_a * sum_b / size
            variance_a = np.einsum("ijk,ijk->i", a, a) - sum_a**2 / size
            variance_b = np.einsum("ijk,ijk->i", b, b) - sum_b**2 / size
            norm = np.sqrt(np.maximum(variance_a, 0) * np.maximum(variance_b, 0))
            # A flat overlap (blank pictures) correlates with nothing.
            value = np.where(norm > 1e-6, covariance / np.maximum(norm, 1e-6), -1.0)
            best = np.maximum(best, value)
    return best


def _neighbours(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's NEIGHBOURS nearest (itself included): Euclidean distances and indices, the
    distance matrix worked through SEARCH_MB at a time."""
    import sklearn
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=min(NEIGHBOURS + 1, len(points)), algorithm="brute")
    with sklearn.config_context(working_memory=SEARCH_MB):
        return index.fit(points).kneighbors(points)


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
    # Whitened once (precision = L L^T), the Mahalanobis distance is the Euclidean one: n x d x d
    # once instead of once per class.
    whiten = np.linalg.cholesky(precision)
    points, centres = features @ whiten, centres @ whiten
    squared = np.einsum("ij,ij->i", points, points)
    nearest = np.full(len(features), np.inf)
    for centre in centres:
        nearest = np.minimum(nearest, squared - 2 * points @ centre + centre @ centre)
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


def group_numbers(groups: Groups, ids: np.ndarray) -> np.ndarray:
    """Per image: its group's smallest id (stable across runs, whatever else was added), 0 when it
    has no copy."""
    smallest = np.full(groups.count, np.iinfo(np.int64).max, np.int64)
    member = groups.group >= 0
    np.minimum.at(smallest, groups.group[member], np.asarray(ids, np.int64)[member])
    return np.where(member, smallest[np.maximum(groups.group, 0)], 0)


def dataset_map(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, 2) map coordinates in [0, 1]: t-SNE (openTSNE) of the features after PCA to
    MAP_DIMENSIONS. It is fitted on a seeded sample of MAP_SAMPLE images and the others are placed
    on that map a chunk at a time, so time and memory stay bounded at 100,000 images."""
    count = len(features)
    if count < 4:
        return np.full((count, 2), 0.5)
    from openTSNE import TSNE
    from sklearn.decomposition import PCA

    features = np.asarray(features, np.float32)
    dimensions = min(MAP_DIMENSIONS, features.shape[1], count)
    reduced = PCA(dimensions, random_state=seed).fit_transform(features).astype(np.float64)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(count, min(count, MAP_SAMPLE), replace=False))
    perplexity = min(30.0, (len(sample) - 1) / 3)
    embedding = TSNE(perplexity=perplexity, n_jobs=2, random_state=seed).fit(reduced[sample])
    points = np.empty((count, 2))
    points[sample] = embedding
    rest = np.setdiff1d(np.arange(count), sample)
    for start in range(0, len(rest), MAP_CHUNK):
        chunk = rest[start : start + MAP_CHUNK]
        points[chunk] = embedding.transform(reduced[chunk], perplexity=min(perplexity, 5.0))
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - low) / np.where(high > low, high - low, 1.0)


@dataclass(frozen=True)
class Assessment:
    groups: Groups
    conflicting: np.ndarray  # per group
    cross_batch: np.ndarray  # per group
    reasons: list[str]  # per image: its unusable reason, "" when usable

    def figures(self) -> dict:
        return {
            "exact_duplicate_groups": int(self.groups.exact.sum()),
            "near_duplicate_groups": int((~self.groups.exact).sum()),
            "duplicate_images": int((self.groups.group >= 0).sum()),
            "conflicting_groups": int(self.conflicting.sum()),
            "cross_batch_groups": int(self.cross_batch.sum()),
            "unusable": sum(1 for reason in self.reasons if reason),
            **{f"unusable_{reason}": self.reasons.count(reason) for reason in (BLANK, NO_FACE, OUTLIER)},
        }


def assess(
    prints: list[Fingerprint],
    labels: list[list[str]],
    batches: list,
    no_face: np.ndarray,
    features: np.ndarray | None = None,
    predicted: np.ndarray | None = None,
) -> Assessment:
    """The whole check over one dataset (a project's images, or `bench_health`'s trees): groups of
    copies (shifted ones included), their flags and every image's unusable reason. Without
    features (no model) nothing is an outlier."""
    thumbs = thumbnails(prints) if prints else None
    spreads = np.array([p.spread for p in prints])
    digests, hashes = [p.digest for p in prints], [p.phash for p in prints]
    groups = duplicate_groups(digests, hashes, thumbs=thumbs, blank=spreads < BLANK_STD)
    conflicting, cross = group_flags(groups, labels, batches)
    outlier = np.zeros(len(prints), bool) if features is None else outliers(features, predicted)
    reasons = unusable_reasons(spreads, np.asarray(no_face, bool), outlier)
    return Assessment(groups, conflicting, cross, reasons)
