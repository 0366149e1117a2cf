"""A trial's training configuration: one frozen dataclass, validated field by field.

Everything a trial needs to be reproduced lives here, so the JSON stored on a `Trial` is the whole
recipe. Validation collects every problem at once, keyed by field, so a form can show them all.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

ARCHITECTURES = ("cnn_trial", "facelabel_cnn", "mobilenet_v2", "vgg16")
# Architectures built on an ImageNet-pretrained base.
TRANSFER_ARCHITECTURES = ("mobilenet_v2", "vgg16")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
INITIALIZERS = ("glorot_uniform", "he_normal")
ACTIVATIONS = ("relu", "leaky_relu")
POOLINGS = ("flatten", "gap")
LR_SCHEDULES = ("plateau", "cosine")
# Keras dtype policies a trial may train under; the shipped model is always float32.
PRECISIONS = ("float32", "mixed_bfloat16")
# The file names Keras itself downloads; an admin drops them into IMAGENET_WEIGHTS_DIR.
IMAGENET_FILES = {
    "mobilenet_v2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_*_no_top.h5",
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
}


@dataclass(frozen=True)
class TrainingConfig:
    architecture: str = "cnn_trial"
    input_size: int = 48
    grayscale: bool = True
    # Convolutional blocks (cnn_trial, facelabel_cnn): filters and dropout per block.
    conv_filters: tuple[int, ...] = (64, 128, 256)
    conv_dropout: tuple[float, ...] = (0.25, 0.25, 0.25)
    # facelabel_cnn only: convolutions per block; empty means two in every block.
    convs_per_block: tuple[int, ...] = ()
    pooling: str = "flatten"
    dense_units: int = 512  # 0: no hidden dense layer in the head
    dropout: float = 0.3
    l2: float = 0.001
    initializer: str = "glorot_uniform"
    activation: str = "relu"
    leaky_alpha: float = 0.1
    freeze_base: bool = True  # transfer architectures only

    optimizer: str = "adam"
    learning_rate: float = 0.001
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    clipnorm: float | None = None
    batch_size: int = 64
    epochs: int = 100
    # plateau: the learning rate drops when val_loss stalls; cosine: it decays to zero over all the
    # epochs (after a linear warm-up), which suits a fixed time budget.
    lr_schedule: str = "plateau"
    warmup_epochs: int = 0

    # Augmentation, in ImageDataGenerator's units: degrees, fractions of the side, pixel levels.
    rotation: float = 30.0
    width_shift: float = 0.2
    height_shift: float = 0.2
    zoom: float = 0.2
    shear: float = 0.2
    horizontal_flip: bool = True
    brightness_range: tuple[float, float] | None = None
    channel_shift: float = 0.0
    random_crop: int = 0  # pad by this many pixels, then crop back to input_size
    # Regularisers on whole training batches: mixup blends each face and its target with another
    # (the blend drawn from Beta(mixup, mixup); 0: off); random erasing blanks a rectangle of up
    # to a fifth of the face with noise, on this share of the faces (an occluded mouth or eye).
    mixup: float = 0.0
    random_erasing: float = 0.0

    class_weights: bool = True
    label_smoothing: float = 0.0
    early_stopping_patience: int = 20  # 0: no early stopping
    lr_plateau_patience: int = 5  # 0: no plateau schedule
    lr_plateau_factor: float = 0.5
    # The saved model averages its predictions for the image and its mirror image.
    flip_averaging: bool = False
    imagenet_weights: str = ""
    train_from_scratch_ok: bool = False
    # Crowd votes (votes.csv's columns): train on each face's vote distribution, not its folder.
    votes: str = ""
    # A saved model (.keras) to start from instead of random weights; its layers replace the
    # architecture settings, and a flip-averaged file is unwrapped to the network inside.
    init_from: str = ""
    # A folder where the trial keeps its last epoch (weights, optimizer, epoch number) and its best
    # checkpoint: a trial started again with the same folder and settings resumes from there (a
    # long run outlives a killed process or a machine that went away). Emptied on success.
    backup_dir: str = ""
    seed: int = 1234
    # mixed_bfloat16 computes in bfloat16 with float32 weights: a FER2013 epoch of facelabel_cnn
    # took 105 s instead of 150 s on the 2-core machine (its CPU has AMX); CPUs without bfloat16
    # units may be slower than in float32.
    precision: str = "float32"

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def is_transfer(self) -> bool:
        return self.architecture in TRANSFER_ARCHITECTURES


FIELDS = {f.name: f for f in dataclasses.fields(TrainingConfig)}
DEFAULTS = {name: f.default for name, f in FIELDS.items()}

# (low, high, low inclusive, high inclusive) for numbers.
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "input_size": (32, 224, True, True),
    "dense_units": (0, 4096, True, True),
    "dropout": (0, 1, True, False),
    "l2": (0, 1, True, True),
    "leaky_alpha": (0, 1, True, True),
    "learning_rate": (0, 1, False, True),
    "momentum": (0, 1, True, False),
    "clipnorm": (0, 1000, False, True),
    "batch_size": (1, 1024, True, True),
    "epochs": (1, 1000, True, True),
    "warmup_epochs": (0, 100, True, True),
    "rotation": (0, 180, True, True),
    "width_shift": (0, 1, True, False),
    "height_shift": (0, 1, True, False),
    "zoom": (0, 1, True, False),
    "shear": (0, 1, True, False),
    "channel_shift": (0, 255, True, True),
    "random_crop": (0, 32, True, True),
    "label_smoothing": (0, 0.5, True, True),
    "mixup": (0, 10, True, True),
    "random_erasing": (0, 1, True, True),
    "early_stopping_patience": (0, 1000, True, True),
    "lr_plateau_patience": (0, 1000, True, True),
    "lr_plateau_factor": (0, 1, False, False),
    "seed": (0, 2**31 - 1, True, True),
}
CHOICES = {
    "architecture": ARCHITECTURES,
    "optimizer": OPTIMIZERS,
    "initializer": INITIALIZERS,
    "activation": ACTIVATIONS,
    "pooling": POOLINGS,
    "lr_schedule": LR_SCHEDULES,
    "precision": PRECISIONS,
}
INTS = {"input_size", "dense_units", "batch_size", "epochs", "warmup_epochs", "random_crop", "seed"} | {
    "early_stopping_patience",
    "lr_plateau_patience",
}
BOOLS = {
    "grayscale",
    "freeze_base",
    "nesterov",
    "horizontal_flip",
    "class_weights",
    "flip_averaging",
    "train_from_scratch_ok",
}
STRINGS = set(CHOICES) | {"imagenet_weights", "votes", "init_from", "backup_dir"}


def config_validate(data: dict[str, Any]) -> TrainingConfig:
    """A TrainingConfig from defaults overridden by `data`, or a ValidationError keyed by field."""
    if not isinstance(data, dict):
        raise ValidationError("The configuration must be a JSON object.")
    errors: dict[str, list[str]] = {}
    values = dict(DEFAULTS)
    for name, value in data.items():
        if name not in FIELDS:
            errors.setdefault(name, []).append(
                f"Unknown setting {name!r}; known: {', '.join(sorted(FIELDS))}."
            )
            continue
        try:
            values[name] = _clean(name, value)
        except ValueError as exc:
            errors.setdefault(name, []).append(str(exc))
    if not errors:
        _check_together(values, errors)
    if errors:
        raise ValidationError(errors)
    return TrainingConfig(**values)


def config_to_dict(config: TrainingConfig) -> dict[str, Any]:
    """JSON-ready: tuples become lists."""
    data = dataclasses.asdict(config)
    return {name: list(value) if isinstance(value, tuple) else value for name, value in data.items()}


def _clean(name: str, value: Any) -> Any:
    if name in BOOLS:
        if not isinstance(value, bool):
            raise ValueError(f"Must be true or false, got {value!r}.")
        return value
    if name in STRINGS:
        return _clean_string(name, value)
    if name in ("conv_filters", "conv_dropout", "convs_per_block"):
        return _clean_list(name, value)
    if name == "brightness_range":
        return _clean_brightness(value)
    if name == "clipnorm" and value is None:
        return None
    return _clean_number(name, value)


def _clean_string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"Must be text, got {value!r}.")
    if name in CHOICES and value not in CHOICES[name]:
        raise ValueError(f"Must be one of {', '.join(CHOICES[name])}; got {value!r}.")
    return value


def _clean_number(name: str, value: Any) -> int | float:
    # bool is an int in Python; `True` as a learning rate is a mistake, not 1.0.
    wanted = int if name in INTS else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted):
        kind = "a whole number" if name in INTS else "a number"
        raise ValueError(f"Must be {kind}, got {value!r}.")
    low, high, low_in, high_in = RANGES[name]
    if value < low or value > high or (value == low and not low_in) or (value == high and not high_in):
        raise ValueError(
            f"Must be in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}; got {value}."
        )
    return value if name in INTS else float(value)


def _clean_list(name: str, value: Any) -> tuple:
    if name == "convs_per_block" and value in ([], ()):
        return ()  # the architecture's own depth
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= 6:
        raise ValueError("Must be a list of 1 to 6 numbers, one per convolutional block.")
    if name == "conv_filters":
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024 for v in value):
            raise ValueError("Each block's filters must be a whole number in [1, 1024].")
        return tuple(value)
    if name == "convs_per_block":
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4 for v in value):
            raise ValueError("Each block's number of convolutions must be a whole number in [1, 4].")
        return tuple(value)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1 for v in value):
        raise ValueError("Each block's dropout must be a number in [0, 1).")
    return tuple(float(v) for v in value)


def _clean_brightness(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not 0 < value[0] <= value[1] <= 5
    ):
        raise ValueError("Must be null or [low, high] with 0 < low <= high <= 5, e.g. [0.8, 1.2].")
    return (float(value[0]), float(value[1]))


def _check_together(values: dict[str, Any], errors: dict[str, list[str]]) -> None:
    if len(values["conv_dropout"]) != len(values["conv_filters"]):
        errors["conv_dropout"] = ["Give one dropout per convolutional block (as many as conv_filters)."]
    if values["convs_per_block"] and len(values["convs_per_block"]) != len(values["conv_filters"]):
        errors["convs_per_block"] = ["Give one count per convolutional block (as many as conv_filters)."]
    if values["warmup_epochs"] >= values["epochs"]:
        errors["warmup_epochs"] = ["Must be fewer than epochs."]
    # Pooling halves the side once per block; the last block must keep at least one pixel.
    if values["architecture"] in ("cnn_trial", "facelabel_cnn") and values["input_size"] < 2 ** len(
        values["conv_filters"]
    ):
        errors["input_size"] = [f"Too small for {len(values['conv_filters'])} pooling blocks."]
    if values["random_crop"] * 2 >= values["input_size"]:
        errors["random_crop"] = ["Must be less than half of input_size."]
    if values["architecture"] in TRANSFER_ARCHITECTURES:
        _check_transfer(values, errors)
    for name in ("votes", "init_from"):
        if values[name] and not Path(values[name]).is_file():
            errors[name] = [f"The file {values[name]} does not exist on the server."]


def _check_transfer(values: dict[str, Any], errors: dict[str, list[str]]) -> None:
    architecture = values["architecture"]
    if values["grayscale"]:
        errors["grayscale"] = [f"{architecture} is an ImageNet (colour) network: set grayscale to false."]
    if values["train_from_scratch_ok"] and not values["imagenet_weights"]:
        return
    path = imagenet_weights_file(architecture, values["imagenet_weights"])
    if path is None:
        where = getattr(settings, "IMAGENET_WEIGHTS_DIR", "") or "(IMAGENET_WEIGHTS_DIR is not set)"
        given = values["imagenet_weights"]
        errors["imagenet_weights"] = [
            (
                f"The weights file {given} does not exist. "
                if given
                else "No ImageNet weights file was found. "
            )
            + f"{architecture} needs its ImageNet weights, which cannot be downloaded here: put "
            f"{IMAGENET_FILES[architecture]} in the IMAGENET_WEIGHTS_DIR folder {where}, or give "
            "its path in imagenet_weights, or set train_from_scratch_ok to true to train the "
            "network from random weights instead."
        ]
    else:
        values["imagenet_weights"] = str(path)


def imagenet_weights_file(architecture: str, given: str = "") -> Path | None:
    """The weights file to use: the one given, else the first match in IMAGENET_WEIGHTS_DIR."""
    if given:
        path = Path(given)
        return path if path.is_file() else None
    folder = getattr(settings, "IMAGENET_WEIGHTS_DIR", "")
    if not folder or not Path(folder).is_dir():
        return None
    matches = sorted(Path(folder).glob(IMAGENET_FILES[architecture]))
    return matches[0] if matches else None
