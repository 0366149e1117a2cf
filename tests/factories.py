"""Test data shared by the whole suite: a real (tiny) Keras model and generated face-like JPEGs."""

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def make_tiny_model(path: Path, input_size: int = 48, grayscale: bool = True, seed: int = 0) -> Path:
    """Build and save a real Keras model with a few hundred seeded parameters and a 7-way softmax.

    It runs through exactly the code paths the product model does (loading, conversion,
    batched prediction) in a fraction of a second. `path` should end in `.keras`.
    """
    import keras

    channels = 1 if grayscale else 3
    model = keras.Sequential(
        [
            keras.Input((input_size, input_size, channels)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.SeparableConv2D(8, 3, strides=2),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(7, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(seed)
    # Random weights everywhere, batch-norm statistics included, so that a converter that drops
    # or folds a layer wrongly shows up as different probabilities. Variances must stay positive.
    model.set_weights(
        [
            rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path else rng.normal(0, 0.5, w.shape)
            for w in model.weights
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def face_jpeg(seed: int, size: int = 48, mode: str = "L") -> bytes:
    """A cartoon face (oval, two eyes, a mouth whose curve depends on the seed) as JPEG bytes."""
    rng = np.random.default_rng(seed)
    background = (40, 40, 40) if mode == "RGB" else 40
    image = Image.new(mode, (size, size), background)
    draw = ImageDraw.Draw(image)

    def shade(level: int):
        return (level, int(level * 0.8), int(level * 0.7)) if mode == "RGB" else level

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return (round(x0 * size), round(y0 * size), round(x1 * size), round(y1 * size))

    draw.ellipse(box(0.15, 0.08, 0.85, 0.95), fill=shade(int(rng.integers(150, 220))))
    eye = shade(30)
    draw.ellipse(box(0.3, 0.33, 0.42, 0.43), fill=eye)
    draw.ellipse(box(0.58, 0.33, 0.7, 0.43), fill=eye)
    # The mouth is an arc of a circle: smiling (lower half), frowning (upper half) or flat.
    width = max(1, size // 24)
    curve = seed % 3
    if curve == 0:
        draw.arc(box(0.32, 0.55, 0.68, 0.8), 20, 160, fill=eye, width=width)
    elif curve == 1:
        draw.arc(box(0.32, 0.68, 0.68, 0.9), 200, 340, fill=eye, width=width)
    else:
        draw.line(box(0.35, 0.75, 0.65, 0.75), fill=eye, width=width)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def pattern_jpeg(kind: str, width: int = 640, height: int = 480) -> bytes:
    """A picture with no face in it: `bars` (a colour test pattern), `text` (a word-mark logo on a
    flat background) or `blank` (one flat colour)."""
    image = Image.new("RGB", (width, height), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    if kind == "bars":
        colours = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0)]
        for i, colour in enumerate(colours):
            draw.rectangle([i * width // 6, 0, (i + 1) * width // 6, height], fill=colour)
    elif kind == "text":
        font = ImageFont.load_default(size=max(10, height // 6))
        draw.text((width // 10, height // 3), "facelabel", fill=(20, 40, 90), font=font)
    elif kind != "blank":
        raise ValueError(f"unknown pattern {kind!r}")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# Trial settings for a few seconds an epoch on generated faces: trial 1's recipe made tiny, with
# only the cheap flip left of the augmentation (tracing every augmentation layer costs seconds).
TINY_TRIAL = {
    "epochs": 2,
    "batch_size": 8,
    "conv_filters": [8, 16],
    "conv_dropout": [0.1, 0.1],
    "dense_units": 16,
    "early_stopping_patience": 0,
    "lr_plateau_patience": 0,
    "rotation": 0.0,
    "width_shift": 0.0,
    "height_shift": 0.0,
    "zoom": 0.0,
    "shear": 0.0,
}
