"""Photos of a case taken on the phone: checked by their content, stored re-encoded without metadata.

A photo is accepted only when its bytes decode as a JPEG, PNG or WebP image (whatever its name or the
type the phone claims), is at most :data:`MAX_PHOTO_BYTES` and :data:`MAX_PIXELS`. It is stored re-encoded in
its own format with nothing but the pixels: no EXIF (a phone writes the place and the device there), no XMP,
no comments. The picture is turned upright first, as the EXIF orientation said, so that dropping the tag
does not turn it. The stored bytes are named by their SHA-256; the sent bytes' SHA-256 is kept beside it.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from twin.errors import N_, InputError

MAX_PHOTO_BYTES = 10 * 1024 * 1024  # what a phone's camera sends at most
MAX_PIXELS = 50_000_000  # a 50-megapixel camera; more is a decompression bomb, not a photo
PHOTO_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
PHOTO_KINDS = ("before", "after")
JPEG_QUALITY = 88


@dataclass(frozen=True)
class CheckedPhoto:
    """A photo fit to store: its re-encoded ``data`` (no metadata), their ``sha256``, the sent bytes'
    ``original_sha256``, ``media_type`` and size in pixels."""

    data: bytes
    sha256: str
    original_sha256: str
    media_type: str
    width: int
    height: int


class PhotoError(InputError):
    """The upload is not a photo the field loop keeps: not an image, or an image of another format."""


class PhotoTooLarge(PhotoError):
    """The upload is over :data:`MAX_PHOTO_BYTES` or :data:`MAX_PIXELS`."""


def check_photo(data: bytes, *, name: str = N_("the photo")) -> CheckedPhoto:
    """Check that ``data`` is a JPEG, PNG or WebP image by its content, and re-encode it without metadata.

    Parameters
    ----------
    data : bytes
        What the phone sent.
    name : str
        How messages call it (the file's name on the phone).

    Raises
    ------
    PhotoTooLarge
        Over :data:`MAX_PHOTO_BYTES` or :data:`MAX_PIXELS`.
    PhotoError
        Empty, not an image, or an image of another format.
    """
    if not data:
        raise PhotoError(N_("{name} is empty; take the photo again."), name=name)
    if len(data) > MAX_PHOTO_BYTES:
        raise PhotoTooLarge(N_("{name} is {size_mb:.1f} MB; a photo may be at most {max_mb} MB. Take it at a lower "
                               "resolution."), name=name, size_mb=len(data) / 2**20, max_mb=MAX_PHOTO_BYTES // 2**20)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format
            if fmt not in PHOTO_FORMATS:
                raise PhotoError(N_("{name} is a {found} image; send a JPEG, PNG or WebP photo."), name=name,
                                 found=fmt or "?")
            if image.width * image.height > MAX_PIXELS:
                raise PhotoTooLarge(N_("{name} has {megapixels:.0f} megapixels; at most {max_mp} are kept."),
                                    name=name, megapixels=image.width * image.height / 1e6,
                                    max_mp=MAX_PIXELS // 1_000_000)
            image.load()  # decode it all: a truncated or forged file fails here, not later
            upright = ImageOps.exif_transpose(image)
    except PhotoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PhotoTooLarge(N_("{name} has more pixels than a photo ({max_mp} megapixels at most)."), name=name,
                            max_mp=MAX_PIXELS // 1_000_000) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PhotoError(N_("{name} is not an image that can be read ({reason}); send a JPEG, PNG or WebP photo."),
                         name=name, reason=type(exc).__name__) from None
    stored = _encode(upright, fmt)
    return CheckedPhoto(data=stored, sha256=hashlib.sha256(stored).hexdigest(),
                        original_sha256=hashlib.sha256(data).hexdigest(), media_type=PHOTO_FORMATS[fmt],
                        width=upright.width, height=upright.height)


def _encode(image: Image.Image, fmt: str) -> bytes:
    """The pixels alone, in ``fmt``: a new image carries none of the source's info (EXIF, XMP, ICC, text)."""
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    clean = Image.new(image.mode, image.size)
    if image.mode == "P":
        clean.putpalette(image.getpalette())
    clean.paste(image)
    out = io.BytesIO()
    options = {"JPEG": {"quality": JPEG_QUALITY}, "WEBP": {"quality": JPEG_QUALITY}, "PNG": {"optimize": False}}[fmt]
    clean.save(out, format=fmt, **options)
    return out.getvalue()
