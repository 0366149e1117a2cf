"""Training and validation data as tf.data pipelines.

Two sources: a server folder (train/ and validation/, one folder per emotion, FER2013's layout)
read lazily file by file, and a project's final labels, whose face crops are decoded once into
memory (projects are small next to FER2013, and their files may live in S3). Pixels are scaled
to [0, 1]; augmentation runs as Keras preprocessing layers on training batches only.
"""

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image as PILImage

from inference.crowd import Votes, votes_key, votes_read
from inference.faces import stored_face
from projects.models import EMOTIONS, Image
from projects.selectors import final_label_expression

if TYPE_CHECKING:
    import tensorflow as tf

    from .config import TrainingConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}


@dataclass
class Split:
    """One split's examples: file paths (folder data) or decoded pixels (project data)."""

    labels: np.ndarray  # class indices into EMOTIONS (the crowd's majority when trained on votes)
    paths: list[str] | None = None
    pixels: np.ndarray | None = None  # (n, size, size, channels) uint8
    targets: np.ndarray | None = None  # (n, 7) crowd vote distributions; None: one-hot labels
    # Files left out of a vote-trained split, by reason: "no_votes", "not_an_emotion".
    left_out: dict[str, int] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def folder_split(folder: Path, votes: "dict[str, Votes] | None" = None) -> Split:
    """Files under folder/<emotion>/ (folder names matched case-insensitively).

    With crowd votes, each file's target is its vote distribution over the seven emotions and the
    folder name is ignored. Files the crowd mostly calls contempt, unknown or not-a-face are left
    out (no emotion folder is right for them, and the product's measure does not count them), and
    so are files without votes: FER+ has none only for images ten people called not-a-face.
    """
    paths, labels, targets = [], [], []
    left_out = {"no_votes": 0, "not_an_emotion": 0}
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        if child.name.lower() not in EMOTIONS:
            continue
        for file in sorted(p for p in child.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            if votes is None:
                paths.append(str(file))
                labels.append(EMOTIONS.index(child.name.lower()))
                continue
            crowd = votes.get(votes_key(file))
            if crowd is None:
                left_out["no_votes"] += 1
            elif not crowd.counts_as_emotion:
                left_out["not_an_emotion"] += 1
            else:
                paths.append(str(file))
                targets.append(crowd.distribution())
                labels.append(EMOTIONS.index(crowd.majority))
    if votes is None:
        return Split(labels=np.array(labels, np.int64), paths=paths)
    return Split(
        labels=np.array(labels, np.int64),
        paths=paths,
        targets=np.array(targets, np.float32).reshape(-1, len(EMOTIONS)),
        left_out=left_out,
    )


def folder_splits(data_dir: str | Path, votes_file: str = "") -> tuple[Split, Split]:
    root = Path(data_dir)
    votes = votes_read(votes_file) if votes_file else None
    return folder_split(root / "train", votes), folder_split(root / "validation", votes)


def project_splits(project, config: "TrainingConfig", validation_fraction: float) -> tuple[Split, Split]:
    """The project's images with a final label, their faces cropped, split per class by seed."""
    # The final label follows the project's label policy, as the export does.
    rows = list(
        Image.objects.filter(project=project)
        .annotate(final=final_label_expression(project.label_policy))
        .exclude(final="")
        .exclude(final=None)
        .only("id", "file", "face_box")
        .order_by("id")
    )
    mode = "L" if config.grayscale else "RGB"
    faces = (stored_face(row.file.name, row.face_box, mode) for row in rows)
    pixels = np.stack([_resized(face, config) for face in faces]) if rows else None
    labels = np.array([EMOTIONS.index(row.final) for row in rows], np.int64)
    validation = _validation_indices(labels, validation_fraction, config.seed)
    train = np.setdiff1d(np.arange(len(rows)), validation)
    if pixels is None or not len(train) or not len(validation):
        raise ValueError(
            f"the project has {len(rows)} labeled images: too few for a train and a validation split"
        )
    return (
        Split(labels=labels[train], pixels=pixels[train]),
        Split(labels=labels[validation], pixels=pixels[validation]),
    )


def _validation_indices(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    # Per class, so that a rare class appears on both sides; seeded, so a rerun gets the same split.
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = round(len(members) * fraction)
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        chosen.append(members[:count])
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], np.int64)


def _resized(picture, config: "TrainingConfig") -> np.ndarray:
    picture = picture.resize((config.input_size, config.input_size), PILImage.Resampling.BILINEAR)
    return np.asarray(picture, np.uint8).reshape(config.input_size, config.input_size, config.channels)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Balanced weights for the classes present; 1.0 for absent ones (Keras wants every index)."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    found = dict(zip(present.tolist(), weights.tolist(), strict=True))
    return {index: float(found.get(index, 1.0)) for index in range(len(EMOTIONS))}


def dataset(split: Split, config: "TrainingConfig", *, training: bool) -> "tf.data.Dataset":
    """Batches of ([0, 1] pixels, one-hot labels); shuffled and augmented when training."""
    import tensorflow as tf

    labels = split.targets if split.targets is not None else tf.one_hot(split.labels, len(EMOTIONS))
    if split.pixels is not None:
        data = tf.data.Dataset.from_tensor_slices((split.pixels, labels))
    else:
        data = tf.data.Dataset.from_tensor_slices((split.paths, labels))
        data = data.map(lambda path, y: (_load(path, config), y), num_parallel_calls=tf.data.AUTOTUNE)
        # Decode each file once, not once per epoch; kept as bytes (FER2013 at 48x48: 66 MB).
        data = data.cache()
    if training:
        data = data.shuffle(min(len(split), 30_000), seed=config.seed, reshuffle_each_iteration=True)
    data = data.batch(config.batch_size).map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y))
    if training:
        augment = augmentation(config)
        if augment is not None:
            # Under mixed_bfloat16 the augmentation layers answer in bfloat16; erasing and mixup
            # (and the model's input) take the float32 batch the other paths give.
            data = data.map(
                lambda x, y: (tf.cast(augment(x, training=True), tf.float32), y),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        if config.random_erasing:
            data = data.map(lambda x, y: (_erase(x, config.random_erasing), y))
        if config.mixup:
            data = data.map(lambda x, y: _mixup(x, y, config.mixup))
    return data.prefetch(tf.data.AUTOTUNE)


def _mixup(x, y, alpha: float):
    """Each face blended with another face of the batch, and its target with that face's target."""
    import tensorflow as tf

    batch = tf.shape(x)[0]
    # Beta(alpha, alpha) as a ratio of two Gamma draws; the larger share keeps the face itself.
    a, b = tf.random.gamma([batch], alpha), tf.random.gamma([batch], alpha)
    share = a / tf.maximum(a + b, 1e-12)
    share = tf.maximum(share, 1.0 - share)
    partner = tf.random.shuffle(tf.range(batch))
    mixed_x = share[:, None, None, None] * x + (1.0 - share[:, None, None, None]) * tf.gather(x, partner)
    y = tf.cast(y, tf.float32)
    return mixed_x, share[:, None] * y + (1.0 - share[:, None]) * tf.gather(y, partner)


def _erase(x, probability: float):
    """A rectangle of 2-20% of the face, aspect 0.3-3.3, filled with noise on a share of faces."""
    import tensorflow as tf

    batch, height, width = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    area = tf.random.uniform([batch], 0.02, 0.2)
    aspect = tf.exp(tf.random.uniform([batch], tf.math.log(0.3), tf.math.log(3.3)))
    h = tf.minimum(tf.sqrt(area * aspect), 1.0)
    w = tf.minimum(tf.sqrt(area / aspect), 1.0)
    top = tf.random.uniform([batch]) * (1.0 - h)
    left = tf.random.uniform([batch]) * (1.0 - w)
    rows = (tf.cast(tf.range(height), tf.float32) + 0.5) / tf.cast(height, tf.float32)
    cols = (tf.cast(tf.range(width), tf.float32) + 0.5) / tf.cast(width, tf.float32)
    inside_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] < (top + h)[:, None])
    inside_cols = (cols[None, :] >= left[:, None]) & (cols[None, :] < (left + w)[:, None])
    chosen = tf.random.uniform([batch]) < probability
    mask = inside_rows[:, :, None] & inside_cols[:, None, :] & chosen[:, None, None]
    return tf.where(mask[..., None], tf.random.uniform(tf.shape(x)), x)


def _load(path, config: "TrainingConfig"):
    import tensorflow as tf

    pixels = tf.io.decode_image(tf.io.read_file(path), channels=config.channels, expand_animations=False)
    size = (config.input_size, config.input_size)
    # Area averaging when shrinking and bilinear when enlarging, as the inference engine does.
    shrinking = tf.reduce_any(tf.shape(pixels)[:2] > config.input_size)
    pixels = tf.cond(
        shrinking,
        lambda: tf.image.resize(pixels, size, method="area"),
        lambda: tf.image.resize(pixels, size, method="bilinear"),
    )
    return tf.cast(tf.clip_by_value(tf.round(pixels), 0.0, 255.0), tf.uint8)


def augmentation(config: "TrainingConfig"):
    """A Keras Sequential of random layers in ImageDataGenerator's spirit, or None if no change."""
    import keras

    layers = []
    if config.random_crop:
        # Pad (by edge reflection) and crop back: shifts of up to random_crop pixels, no blank borders.
        pad = config.random_crop
        reflect_pad = _custom_layers()[0]
        layers.append(reflect_pad(pad))
        layers.append(keras.layers.RandomCrop(config.input_size, config.input_size, seed=config.seed))
    if config.rotation:
        layers.append(
            keras.layers.RandomRotation(config.rotation / 360, fill_mode="nearest", seed=config.seed)
        )
    if config.width_shift or config.height_shift:
        layers.append(
            keras.layers.RandomTranslation(
                config.height_shift, config.width_shift, fill_mode="nearest", seed=config.seed
            )
        )
    if config.zoom:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="nearest", seed=config.seed))
    if config.shear:
        layers.append(
            keras.layers.RandomShear(config.shear, config.shear, fill_mode="nearest", seed=config.seed)
        )
    if config.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=config.seed))
    if config.brightness_range or config.channel_shift:
        jitter = _custom_layers()[1]
        layers.append(jitter(config.brightness_range, config.channel_shift / 255.0))
    return keras.Sequential(layers, name="augmentation") if layers else None


@functools.cache
def _custom_layers():
    """Two small layers, defined on first use so that importing this module does not load TF."""
    import keras
    import tensorflow as tf

    class ReflectPad(keras.layers.Layer):
        def __init__(self, pad: int, **kwargs):
            super().__init__(**kwargs)
            self.pad = pad

        def call(self, x):
            p = self.pad
            return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    class IntensityJitter(keras.layers.Layer):
        """ImageDataGenerator's brightness_range (multiplies) and channel_shift_range (adds per
        channel); Keras's RandomBrightness only adds, so this is a layer of its own."""

        def __init__(self, brightness: tuple[float, float] | None, shift: float, **kwargs):
            super().__init__(**kwargs)
            self.brightness = brightness
            self.shift = shift

        def call(self, x):
            batch = tf.shape(x)[0]
            if self.brightness:
                low, high = self.brightness
                x = x * tf.random.uniform([batch, 1, 1, 1], low, high)
            if self.shift:
                x = x + tf.random.uniform([batch, 1, 1, tf.shape(x)[-1]], -self.shift, self.shift)
            return tf.clip_by_value(x, 0.0, 1.0)

    return ReflectPad, IntensityJitter
