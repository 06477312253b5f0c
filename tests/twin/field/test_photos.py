"""Photos of a case: images by their content only, at most 10 MB and 50 megapixels, stored without metadata."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image, PngImagePlugin

from twin.field.photos import MAX_PHOTO_BYTES, PhotoError, PhotoTooLarge, check_photo

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def phone_photo(fmt: str, *, size=(64, 40), orientation: int | None = None) -> bytes:
    """A photo as a phone writes it: with the place (GPS), the phone's make and, optionally, its orientation."""
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((20, 20, 220), (0, 0, size[0] // 2, size[1]))  # left half blue: a turn shows
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[GPS_IFD] = {1: "N", 2: (34.0, 46.0, 0.0), 3: "E", 4: (113.0, 43.0, 0.0)}
    if orientation is not None:
        exif[ORIENTATION] = orientation
    out = io.BytesIO()
    extra = {"pnginfo": _png_text()} if fmt == "PNG" else {}
    image.save(out, format=fmt, exif=exif.tobytes(), **extra)
    return out.getvalue()


def _png_text() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at 34.766N 113.716E")
    return info


@pytest.mark.parametrize("fmt, media_type", [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")])
def test_a_phone_photo_is_kept_without_its_place_or_any_metadata(fmt, media_type):
    sent = phone_photo(fmt)
    assert Image.open(io.BytesIO(sent)).getexif().get_ifd(GPS_IFD), "the fixture carries a GPS position"
    photo = check_photo(sent, name="IMG_0001.txt")  # the name says nothing: the content does
    stored = Image.open(io.BytesIO(photo.data))
    assert stored.format == fmt and photo.media_type == media_type
    assert dict(stored.getexif()) == {} and not stored.getexif().get_ifd(GPS_IFD)
    assert not ({"exif", "xmp", "Comment", "comment", "icc_profile"} & set(stored.info)), stored.info
    assert b"PhoneMaker" not in photo.data and b"113.716" not in photo.data
    assert photo.sha256 == hashlib.sha256(photo.data).hexdigest()
    assert photo.original_sha256 == hashlib.sha256(sent).hexdigest() != photo.sha256
    assert (photo.width, photo.height) == (64, 40)


def test_a_turned_photo_is_stored_upright():
    photo = check_photo(phone_photo("JPEG", orientation=6))  # the phone was held upright: turn 90° clockwise
    stored = Image.open(io.BytesIO(photo.data)).convert("RGB")
    assert (photo.width, photo.height) == stored.size == (40, 64)
    top, bottom = stored.getpixel((20, 5)), stored.getpixel((20, 58))
    assert top[2] > 150 > top[0] and bottom[0] > 150 > bottom[2], "the blue left half is on top after the turn"


@pytest.mark.parametrize("data, found", [
    (b"%PDF-1.7\n" + b"x" * 2000, "not an image"),
    (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "not an image"),  # a JPEG's first bytes, then nothing of one
    ("一张照片".encode() * 100, "not an image"),
])
def test_what_is_not_an_image_is_refused_whatever_its_name(data, found):
    with pytest.raises(PhotoError, match=found):
        check_photo(data, name="photo.jpg")


def test_an_image_of_another_format_is_refused_by_its_content():
    out = io.BytesIO()
    Image.new("RGB", (20, 20)).save(out, format="GIF")
    with pytest.raises(PhotoError, match="a GIF image; send a JPEG, PNG or WebP"):
        check_photo(out.getvalue(), name="photo.jpg")
    truncated = phone_photo("PNG")[:-200]
    with pytest.raises(PhotoError, match="not an image that can be read"):
        check_photo(truncated)


def test_too_large_photos_are_refused_by_bytes_and_by_pixels():
    with pytest.raises(PhotoTooLarge, match="10.0 MB; a photo may be at most 10 MB"):
        check_photo(b"\xff\xd8" + b"\0" * (MAX_PHOTO_BYTES - 1))
    check_photo(phone_photo("JPEG"))  # a small one passes the same check
    out = io.BytesIO()
    Image.new("1", (8000, 8000)).save(out, format="PNG")  # 64 megapixels in a few kilobytes
    assert len(out.getvalue()) < 100_000
    with pytest.raises(PhotoTooLarge, match="64 megapixels; at most 50"):
        check_photo(out.getvalue())
