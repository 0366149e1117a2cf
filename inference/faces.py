"""Finding the face in an image before it goes to the emotion model."""

import functools
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from django.core.files.storage import default_storage
from PIL import Image

from . import blazeface

FacePath = Literal["detected", "whole", "small", "blank"]

# FER2013-style images are tight 48x48 face crops: Haar finds nothing in them, and they are
# already what the model wants, so images this small skip detection.
SMALL_IMAGE_SIDE = 96
# ...unless they are one flat colour, with nothing in them to read an emotion from: FER2013 holds
# 12 such images (std 0; the next lowest of its 32,298 is above 30). JPEG noise on a flat image
# stays well under this.
BLANK_MAX_STD = 2.0
# Detection runs on a copy scaled down to this size. BlazeFace (blazeface.py) looks first: it
# finds the faces that fill a good part of the picture far more often than Haar (of FER2013 faces
# pasted into 640x480 frames at half its height, 99% against 75%; at 30%, 95% against 74%), but
# sees little below a fifth of the picture's height, so Haar then looks for faces down to a tenth
# of its shorter side (at a fifth of 1280x960, both together find 68%, Haar alone 63%). Haar's
# cost grows with the pixels and the scales searched: on faces pasted into 1280x960 photos this
# takes ~20 ms instead of ~50 ms at 480 px and ~65 ms at 640 px, finding almost the same faces; a
# face smaller than that is too coarse to read an expression from anyway.
DETECTION_MAX_SIDE = 320
MIN_FACE_FRACTION = 0.1
# Crops are stored at most this large. Models take 48-224 px inputs, and a chunk of whole 40 MP
# photos kept at full size would not fit in a worker's memory.
FACE_MAX_SIDE = 256
# The cascade's box is tight around the eyes and mouth; expressions also live in the brows and
# the chin, and the training crops (FER2013) include them.
MARGIN = 0.2
# BlazeFace's box already reaches the brows and the chin: a tenth more frames the face as
# FER2013's crops do (on pasted FER2013 faces the model was right for 0.636 of them at 0.1,
# 0.628 at 0 and 0.603 at 0.2).
BLAZEFACE_MARGIN = 0.1


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy arrays with == is ambiguous
class Face:
    """A face crop: HxW uint8 for grayscale images, HxWx3 RGB otherwise.

    `box` is (x, y, w, h) of the crop in the original image; `pixels` may be a downscaled copy
    of that region (longer side at most FACE_MAX_SIDE).
    """

    pixels: np.ndarray
    box: tuple[int, int, int, int]
    path: FacePath


def find_face(image: Image.Image) -> Face:
    """The largest face with a margin around it, or the whole image when none is found.

    Small images are taken as face crops without detection ("small"), unless they are blank.
    """
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    width, height = image.size
    pixels = np.asarray(image)
    if max(width, height) <= SMALL_IMAGE_SIDE:
        path = "blank" if _is_blank(pixels) else "small"
        return Face(pixels.copy(), (0, 0, width, height), path)
    box = _largest_face(pixels)
    if box is None:
        return Face(_bounded(pixels), (0, 0, width, height), "whole")
    x, y, w, h = box
    return Face(_bounded(pixels[y : y + h, x : x + w]), box, "detected")


def stored_face(name: str, box=None, mode: str | None = None) -> Image.Image:
    """A stored image (`name` in the default storage) cut to `box` (x, y, w, h: the face its
    labeling found) when one is given, in `mode` ("L" or "RGB"; None keeps an L or RGB image as
    it is and converts any other to RGB). Labeling, audits and training all read faces here."""
    with default_storage.open(name, "rb") as handle:
        picture = Image.open(handle)
        picture.load()
    mode = mode or (picture.mode if picture.mode in ("L", "RGB") else "RGB")
    if picture.mode != mode:
        picture = picture.convert(mode)
    if box:
        x, y, w, h = box
        picture = picture.crop((x, y, x + w, y + h))
    return picture


def _is_blank(pixels: np.ndarray) -> bool:
    # Per channel: a flat colour is blank although its R, G and B values differ.
    channels = pixels.reshape(-1, pixels.shape[2]) if pixels.ndim == 3 else pixels.reshape(-1, 1)
    return float(channels.std(axis=0).max()) <= BLANK_MAX_STD


def _largest_face(pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    """BlazeFace's largest face, else Haar's (small faces in large photos), with its margin."""
    height, width = pixels.shape[:2]
    scale = min(1.0, DETECTION_MAX_SIDE / max(width, height))
    small = pixels
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    found, margin = blazeface.detect(small), BLAZEFACE_MARGIN
    if not found:
        found, margin = _haar_faces(small), MARGIN
    if not found:
        return None
    x, y, w, h = (v / scale for v in max(found, key=lambda b: b[2] * b[3]))
    x0, y0 = max(0, round(x - margin * w)), max(0, round(y - margin * h))
    x1, y1 = min(width, round(x + w + margin * w)), min(height, round(y + h + margin * h))
    return (x0, y0, x1 - x0, y1 - y0)


def _haar_faces(pixels: np.ndarray) -> list[tuple[float, float, float, float]]:
    gray = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    smallest = max(30, round(MIN_FACE_FRACTION * min(gray.shape)))
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest))
    return [tuple(float(v) for v in box) for box in found]


def _bounded(pixels: np.ndarray) -> np.ndarray:
    """A compact copy of the crop: never a view that would keep the whole photo alive."""
    height, width = pixels.shape[:2]
    scale = FACE_MAX_SIDE / max(width, height)
    if scale >= 1.0:
        return pixels.copy()
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


@functools.cache
def _cascade() -> cv2.CascadeClassifier:
    # Loaded on first use, once per process: parsing the 1 MB XML costs about 50 ms.
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"could not load the Haar cascade from {path}")
    return cascade
