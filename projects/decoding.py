"""Turn what a user uploads (image files, or ZIP archives whose folders name each image's
original emotion) into normalised JPEGs and per-file rejections.

All input is hostile: pixel counts are checked from the header before anything is decoded, bytes
are counted as they are read (an archive's declared sizes are never trusted), nothing is written
to disk and no name the user gave is ever used as a path.
"""

import io
import logging
import re
import stat
import struct
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from facelabel.errors import ServiceError

from .models import EMOTIONS

logger = logging.getLogger(__name__)

# SVG, PDF, PSD, EPS (Ghostscript!) and friends are refused by not being on this list.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
NESTED_ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
# LZMA is left out: rare in ZIPs, and its errors are not OSErrors.
SUPPORTED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2})
# Folder names other datasets use for FER2013's classes (CK+, JAFFE, KDEF-style exports).
EMOTION_ALIASES = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprise",
}
MAX_NAME_LENGTH = 255  # Image.original_name's max_length
READ_CHUNK = 1024 * 1024
JPEG_QUALITY = 95
THUMBNAIL_QUALITY = 85
ORIENTATION_TAG = 0x0112
ZIP_FLAG_ENCRYPTED = 0x1
ZIP_FLAG_UTF8 = 0x800
CENTRAL_DIR_ENTRY = struct.Struct("<4s24xHHH12x")  # signature, name/extra/comment lengths
ZIP64_END_RECORDS_SIZE = 56 + 20  # zip64 end-of-central-directory record + locator


@dataclass(frozen=True)
class ImportedImage:
    name: str  # for display only (ZIP: the member's path in the archive), never a path
    original_label: str  # one of EMOTIONS, or "" when no folder names one
    content: bytes  # baseline JPEG, mode L or RGB
    width: int
    height: int
    thumbnail: bytes | None  # None when the image is small enough to be its own thumbnail
    note: str = ""  # something the uploader should hear about, though the image was imported


@dataclass(frozen=True)
class Rejection:
    name: str
    reason: str


class UploadRefused(ServiceError):
    """The whole request is refused: nothing from it is imported."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class _ImageTooLarge(Exception):
    pass


@dataclass
class _ByteBudget:
    """Uncompressed bytes an archive may still produce, across all its members."""

    left: int


@dataclass
class _InflateClock:
    """Seconds the request may still spend decompressing archive members, across all archives."""

    left: float


def check_upload_request(file_count: int | None, content_length: int | None) -> None:
    """Refuse a request before any of it is imported. Call it with file_count None before the
    body is parsed, so an oversized body is refused without being read."""
    if content_length is not None and content_length > settings.UPLOAD_MAX_BYTES:
        raise UploadRefused(
            413,
            _("upload too large: %(size)s bytes (limit %(limit)s)")
            % {"size": f"{content_length:,}", "limit": f"{settings.UPLOAD_MAX_BYTES:,}"},
        )
    if file_count is None:
        return
    if file_count > settings.UPLOAD_MAX_FILES:
        raise UploadRefused(
            400,
            _("too many files: %(count)s (limit %(limit)s per upload)")
            % {"count": file_count, "limit": settings.UPLOAD_MAX_FILES},
        )
    if file_count < 1:
        raise UploadRefused(400, _("no files uploaded"))


def content_length(request) -> int | None:
    """The request's declared body size (0 when none is given), or None when the header is not
    a number; check_upload_request judges it."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


def too_many_files() -> UploadRefused:
    """Django stops reading a body past DATA_UPLOAD_MAX_NUMBER_FILES files (TooManyFilesSent),
    before the files can be counted: the same refusal, in words."""
    limit = settings.UPLOAD_MAX_FILES
    message = _("too many files: more than %(limit)s (limit %(limit)s per upload)")
    return UploadRefused(400, message % {"limit": limit})


def iter_upload(
    files: Iterable[UploadedFile | BinaryIO], skip: Callable[[str], bool] | None = None
) -> Iterator[ImportedImage | Rejection]:
    """Yield one result per image (or skipped member), decoding one image at a time.

    Files must be seekable (Django's uploaded files are): ZIP archives are read in place.
    `skip(name)` is asked before an image is read; True passes over it without a word (a resumed
    upload skips the images it stored before it broke off).
    """
    skip = skip or _skip_none
    clock = _InflateClock(settings.ZIP_MAX_INFLATE_SECONDS)
    for upload in files:
        name = display_name(getattr(upload, "name", None) or "")
        if _is_zip(upload):
            yield from _iter_archive(name, upload, clock, skip)
            continue
        if skip(name):
            continue
        data = _read_capped(upload, settings.IMAGE_MAX_BYTES)
        yield decode_image(name, data)


def _skip_none(name: str) -> bool:
    return False


def display_name(raw: str | bytes) -> str:
    """The name as the user gave it, only made storable: no NUL, no lone surrogate, <= 255."""
    name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    name = name.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return name[:MAX_NAME_LENGTH]


def decode_image(
    name: str, data: bytes, original_label: str = "", note: str = ""
) -> ImportedImage | Rejection:
    """Fully decode `data` and normalise it, or say in a few words why not."""
    if not data:
        return Rejection(name, "empty file")
    if len(data) > settings.IMAGE_MAX_BYTES:
        return Rejection(name, f"file too large (over {settings.IMAGE_MAX_BYTES:,} bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its own limit; a warning must refuse the file.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
                return _normalise(name, data, im, original_label, note)
    except UnidentifiedImageError:
        return Rejection(name, "not an image")
    except _ImageTooLarge as exc:
        return Rejection(name, str(exc))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Rejection(name, _bomb_reason(str(exc)))
    except (OSError, SyntaxError, EOFError, ValueError, struct.error) as exc:
        logger.debug("corrupt image %r: %s", name, exc)
        return Rejection(name, "truncated or corrupt image")
    except Exception:
        # Decoders raise a zoo of exceptions on hostile input; one file must not sink the batch.
        logger.warning("unexpected error decoding %r", name, exc_info=True)
        return Rejection(name, "could not read image")


def _normalise(name: str, data: bytes, im: Image.Image, original_label: str, note: str) -> ImportedImage:
    width, height = im.size
    limit = settings.IMAGE_MAX_PIXELS
    if width * height > limit:
        raise _ImageTooLarge(f"image too large ({width}x{height} pixels, limit {limit})")
    im.load()  # the whole file, so that a truncated one fails here and not in the model
    keep_original = _is_plain_jpeg(im)
    if not keep_original:
        ImageOps.exif_transpose(im, in_place=True)
        im = _to_l_or_rgb(im)
        data = _encode_jpeg(im, JPEG_QUALITY)
    width, height = im.size
    return ImportedImage(
        name=name,
        original_label=original_label,
        content=data,
        width=width,
        height=height,
        thumbnail=_thumbnail(im),
        note=note,
    )


def _is_plain_jpeg(im: Image.Image) -> bool:
    return (
        im.format == "JPEG"
        and im.mode in ("L", "RGB")
        and not im.info.get("progressive")
        and im.getexif().get(ORIENTATION_TAG, 1) == 1
    )


def _to_l_or_rgb(im: Image.Image) -> Image.Image:
    target = "L" if im.mode in GRAY_MODES else "RGB"
    if im.mode in WIDE_GRAY_MODES:
        return _scale_to_8_bits(im).convert("L")
    if im.has_transparency_data:
        im = _on_white(im)
    return im.convert(target)


def _on_white(im: Image.Image) -> Image.Image:
    """Transparent areas hide arbitrary colours (often black): show white there instead."""
    rgba = im.convert("RGBA")
    flat = Image.new("RGBA", im.size, "white")
    flat.alpha_composite(rgba)
    return flat


def _scale_to_8_bits(im: Image.Image) -> Image.Image:
    """Pillow's convert("L") clips 16-bit values at 255 (an all-white face): scale instead."""
    im = im.convert("I")
    high = im.getextrema()[1]
    if high <= 255:
        return im
    scale = 255 / max(high, 65535)
    return im.point(lambda value: value * scale)


def _thumbnail(im: Image.Image) -> bytes | None:
    """Shrinks `im` in place: it is the last use, and a copy would double the memory."""
    size = settings.THUMBNAIL_SIZE
    if max(im.size) <= size:
        return None
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    return _encode_jpeg(im, THUMBNAIL_QUALITY)


def _encode_jpeg(im: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _bomb_reason(message: str) -> str:
    match = re.search(r"\((\d+) pixels\)", message)
    limit = min(settings.IMAGE_MAX_PIXELS, Image.MAX_IMAGE_PIXELS or settings.IMAGE_MAX_PIXELS)
    if match:
        return f"image too large ({match.group(1)} pixels, limit {limit})"
    return f"image too large (limit {limit} pixels)"


def _read_capped(fh: BinaryIO, limit: int, budget: _ByteBudget | None = None) -> bytes:
    """Read at most limit + 1 bytes (one more than allowed shows the file is too large)."""
    chunks: list[bytes] = []
    got = 0
    while got <= limit:
        chunk = fh.read(min(READ_CHUNK, limit + 1 - got))
        if not chunk:
            break
        got += len(chunk)
        chunks.append(chunk)
        if budget is not None:
            budget.left -= len(chunk)
    return b"".join(chunks)


def _is_zip(upload: UploadedFile | BinaryIO) -> bool:
    try:
        return zipfile.is_zipfile(upload)
    except (OSError, ValueError):
        return False
    finally:
        upload.seek(0)


# --- ZIP archives -------------------------------------------------------------------------------


def _iter_archive(
    archive: str, fh: UploadedFile | BinaryIO, clock: _InflateClock, skip: Callable[[str], bool]
) -> Iterator[ImportedImage | Rejection]:
    limit = settings.ZIP_MAX_MEMBERS
    try:
        if _count_members(fh, limit) > limit:
            yield Rejection(archive, f"archive has more than {limit} members: refused")
            return
        with zipfile.ZipFile(fh) as zf:
            yield from _iter_members(archive, zf, clock, skip)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, struct.error):
        yield Rejection(archive, "corrupt ZIP archive")
    except NotImplementedError:
        yield Rejection(archive, "unsupported ZIP archive")


def _count_members(fh: UploadedFile | BinaryIO, limit: int) -> int:
    """Count central-directory entries, stopping once past `limit`.

    ZipFile builds an object per entry as it opens, and trusts neither the declared count nor a
    sane directory size, so a 1 GB upload of empty entries would exhaust memory before any
    check could run. Walking the headers costs a few bytes per entry and nothing more.
    """
    end_record = zipfile._EndRecData(fh)  # no public API exposes it before ZipFile's full read
    if not end_record:
        return 0
    size = end_record[zipfile._ECD_SIZE]
    start = end_record[zipfile._ECD_LOCATION] - size
    if end_record[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        start -= ZIP64_END_RECORDS_SIZE
    fh.seek(max(start, 0))
    count = walked = 0
    while walked < size and count <= limit:
        header = fh.read(CENTRAL_DIR_ENTRY.size)
        if len(header) < CENTRAL_DIR_ENTRY.size:
            break
        signature, name_len, extra_len, comment_len = CENTRAL_DIR_ENTRY.unpack(header)
        if signature != zipfile.stringCentralDir:
            break  # ZipFile reports the corruption itself
        fh.seek(name_len + extra_len + comment_len, io.SEEK_CUR)
        walked += CENTRAL_DIR_ENTRY.size + name_len + extra_len + comment_len
        count += 1
    return count


def _iter_members(
    archive: str, zf: zipfile.ZipFile, clock: _InflateClock, skip: Callable[[str], bool]
) -> Iterator[ImportedImage | Rejection]:
    budget = _ByteBudget(settings.ZIP_MAX_TOTAL_BYTES)
    for info in zf.infolist():
        name = display_name(_member_name(info))
        if _is_clutter(name, info) or skip(name):
            continue
        started = time.monotonic()
        data = _read_member(name, zf, info, budget)
        clock.left -= time.monotonic() - started
        if budget.left < 0:
            total = settings.ZIP_MAX_TOTAL_BYTES
            yield Rejection(archive, f"archive exceeds {total:,} bytes uncompressed: stopped")
            return
        if clock.left < 0:
            seconds = settings.ZIP_MAX_INFLATE_SECONDS
            yield Rejection(archive, f"decompressing took over {seconds:g} s: the rest was not read")
            return
        if isinstance(data, Rejection):
            yield data
        else:
            yield decode_image(name, data, *_label_and_note(name))


def _read_member(
    name: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _ByteBudget
) -> bytes | Rejection:
    """Bytes actually decompressed count against the budget, whatever the archive declares."""
    skip_reason = _member_skip_reason(name, info)
    if skip_reason:
        return Rejection(name, skip_reason)
    # The compressed bytes a member can consume are capped by its compress_size, so this caps
    # what it inflates to by the bytes actually read, whatever its header claims.
    ratio = settings.ZIP_MAX_MEMBER_RATIO
    inflated_cap = max(info.compress_size, 1) * ratio
    allowed = min(settings.IMAGE_MAX_BYTES, max(budget.left, 0), inflated_cap)
    try:
        with zf.open(info) as member:
            data = _read_capped(member, allowed, budget)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error):
        return Rejection(name, "corrupt ZIP member")
    except (NotImplementedError, RuntimeError):
        return Rejection(name, "unsupported ZIP member")
    if len(data) > inflated_cap:
        return Rejection(name, f"compressed more than {ratio}:1 (a ZIP bomb?): skipped")
    return data


def _member_name(info: zipfile.ZipInfo) -> str:
    """Many zippers write UTF-8 names without setting the flag that says so; undo cp437 then."""
    if info.flag_bits & ZIP_FLAG_UTF8:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return info.filename


def _is_clutter(name: str, info: zipfile.ZipInfo) -> bool:
    """Directories and what macOS and editors leave behind: nobody wants them reported."""
    if info.is_dir() or name.endswith(("/", "\\")):
        return True
    parts = _path_parts(name)
    return "__MACOSX" in parts or any(part.startswith(".") for part in parts)


def _member_skip_reason(name: str, info: zipfile.ZipInfo) -> str:
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link skipped"
    if info.flag_bits & ZIP_FLAG_ENCRYPTED:
        return "encrypted member skipped"
    if name.lower().endswith(NESTED_ARCHIVE_SUFFIXES):
        return "nested archive skipped"
    if info.compress_type not in SUPPORTED_COMPRESSION:
        return "unsupported compression method"
    return ""


def _label_and_note(name: str) -> tuple[str, str]:
    """The nearest enclosing folder named after an emotion gives the original label."""
    folders = _path_parts(name)[:-1]
    for folder in reversed(folders):
        key = folder.strip().lower()
        label = EMOTION_ALIASES.get(key, key)
        if label in EMOTIONS:
            return label, ""
    if not folders:
        return "", ""
    return "", f"folder '{folders[-1]}' is not one of the seven emotions: no original label"


def _path_parts(name: str) -> list[str]:
    """Folders and file name, either slash; "." and ".." name no folder of their own."""
    return [part for part in re.split(r"[/\\]", name) if part not in ("", ".", "..")]
