"""Decoding of X-ray files (PNG, JPEG, 8/16-bit, RGB(A), DICOM) and the one shared preprocessing step.

Every path into the model goes through `decode_image` (bytes -> 8-bit RGB array) and
`resize_and_scale` (-> float32 in [0, 1] at the model's size): ingestion, training, `cxr predict`
and the web app. Nothing here writes an image anywhere or logs a DICOM patient field.
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zlib

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_voi_lut, pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from cxr.errors import CxrError, EmptyInput, InputTooLarge, UnsupportedFormat

# Refuse images over ~90 MP (decompression bombs); PIL warns at half of this, we refuse at it.
MAX_PIXELS = 90_000_000
# A deflated DICOM may inflate to at most this (a 90 MP 16-bit frame plus its header fits); a
# 1000:1 deflate bomb is refused after inflating this much, in bounded chunks, not all of it.
MAX_INFLATED_BYTES = 2 * MAX_PIXELS + (1 << 20)
DICOM_EXTENSIONS = (".dcm", ".dicom")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg") + DICOM_EXTENSIONS


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_dicom(data: bytes, name: str = "") -> bool:
    return data[128:132] == b"DICM" or name.lower().endswith(DICOM_EXTENSIONS)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Stretch any numeric image to 0..255 (min-max), keeping 8-bit images as they are."""
    if array.dtype == np.uint8:
        return array
    lo, hi = float(np.min(array)), float(np.max(array))
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        return np.zeros(array.shape, dtype=np.uint8)
    scaled = (array.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))  # float32: half the memory
    return np.round(scaled).astype(np.uint8)


STANDARD_DEPTHS = (8, 10, 12, 14, 16)


def _scale_by_depth(array: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Unsigned integer pixels -> 0..255 by their bit depth (`bits`, else the smallest standard depth that
    holds the maximum), so one picture stored at 8 or 16 bits gives the same pixels; min-max otherwise."""
    if not np.issubdtype(array.dtype, np.integer) or (array.size and int(np.min(array)) < 0):
        return _to_uint8(array)
    top = int(np.max(array)) if array.size else 0
    bits = bits or next((b for b in STANDARD_DEPTHS if top < 2**b), 0)
    if not bits or top >= 2**bits:
        return _to_uint8(array)
    return np.round(array.astype(np.float32) * np.float32(255.0 / (2**bits - 1))).astype(np.uint8)


def _gray_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    return array


def _check_inflated_size(data: bytes, name: str) -> None:
    """A Deflated Explicit VR Little Endian file: inflate in bounded chunks, refuse past MAX_INFLATED_BYTES
    (pydicom would inflate the whole dataset at once, before any size check)."""
    stream = io.BytesIO(data)
    try:
        pydicom.filereader.read_preamble(stream, force=True)
        meta = pydicom.filereader._read_file_meta_info(stream)
    except Exception:
        return  # no readable file meta: dcmread decides (and refuses) below
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    inflater, pending, total = zlib.decompressobj(-zlib.MAX_WBITS), data[stream.tell() :], 0
    try:
        while pending and total <= MAX_INFLATED_BYTES and not inflater.eof:
            chunk = inflater.decompress(pending, 1 << 20)
            if not chunk and inflater.unconsumed_tail == pending:
                break  # no progress (a corrupt stream zlib neither inflates nor rejects): stop, dcmread decides
            total += len(chunk)
            pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise CxrError(f"{name}: the deflated DICOM data is corrupt ({exc}); re-export it.") from exc
    if total > MAX_INFLATED_BYTES:
        raise InputTooLarge(
            f"{name} is a deflated DICOM that inflates to more than {MAX_INFLATED_BYTES // (1 << 20)} MB "
            "(a decompression bomb, or far more than one radiograph); re-export it uncompressed."
        )


def _window(pixels: np.ndarray, ds) -> np.ndarray:
    """The VOI LUT / window to 0..255, or the stored bit depth when there is none or it is unusable
    (a WindowWidth of 0, a malformed LUT)."""
    width = ds.get("WindowWidth")
    try:
        widths = list(width) if isinstance(width, MultiValue) else [width]
        usable_window = "WindowCenter" in ds and all(w is not None and float(w) > 0 for w in widths)
    except (TypeError, ValueError):
        usable_window = False
    if "VOILUTSequence" in ds or usable_window:
        try:
            return _to_uint8(apply_voi_lut(pixels, ds))
        except Exception:  # a malformed VOI LUT: fall back to the bit depth
            pass
    return _scale_by_depth(pixels, int(ds.get("BitsStored", 0) or 0) or None)


def decode_dicom(data: bytes, name: str) -> tuple[np.ndarray, str]:
    """DICOM bytes -> (8-bit RGB array, photometric mode). Applies the VOI LUT / window, inverts
    MONOCHROME1, decodes only the first frame. Only pixel data is read back; no patient field leaves
    this function. Every failure is a CxrError sentence (a 4xx in the web app)."""
    _check_inflated_size(data, name)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types for garbage
        raise CxrError(f"{name} is not a readable DICOM file ({exc.__class__.__name__}); upload a valid .dcm.") from exc
    if "PixelData" not in ds:
        raise CxrError(f"{name} is a DICOM file without pixel data; upload a DICOM image (e.g. a CR/DX radiograph).")
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames, samples = int(ds.get("NumberOfFrames", 1) or 1), int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise CxrError(f"{name}: its image size fields are malformed ({exc}); re-export it.") from exc
    if rows * cols * max(frames, 1) * max(samples, 1) > MAX_PIXELS:
        raise InputTooLarge(
            f"{name} holds {max(frames, 1)} frame(s) of {cols}x{rows}x{samples} samples, over the "
            f"{MAX_PIXELS:,}-sample limit; send a single-frame radiograph."
        )
    try:
        pixels = pixel_array(ds, index=0) if frames > 1 else ds.pixel_array  # only the first frame is decoded
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
        if pixels.ndim == 3 and pixels.shape[-1] not in (3, 4):
            pixels = pixels[0]
        if pixels.ndim == 2:
            pixels = _window(pixels, ds)
            if photometric == "MONOCHROME1":
                pixels = 255 - pixels
        elif pixels.ndim == 3:
            pixels = _to_uint8(pixels[..., :3])
        else:
            raise ValueError(f"pixel data of shape {pixels.shape}")
    except CxrError:
        raise
    except Exception as exc:
        raise CxrError(
            f"{name}: the DICOM pixel data cannot be decoded ({exc.__class__.__name__}); "
            "re-export it uncompressed or as PNG."
        ) from exc
    return _gray_to_rgb(pixels), photometric


def decode_raster(data: bytes, name: str) -> tuple[np.ndarray, str]:
    """PNG/JPEG bytes -> (8-bit RGB array, PIL mode of the file)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InputTooLarge(
                    f"{name} is {width}x{height} pixels, over the {MAX_PIXELS:,}-pixel limit; downscale it."
                )
            image.load()
        except CxrError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputTooLarge(f"{name} is too large to decode safely (decompression bomb); downscale it.") from exc
        except UnidentifiedImageError as exc:
            raise UnsupportedFormat(
                f"{name} is not a PNG, JPEG or DICOM image; upload a chest X-ray in one of those formats."
            ) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise CxrError(f"{name} is corrupt or truncated ({exc}); re-export the image and try again.") from exc
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = _scale_by_depth(np.asarray(image))
    elif mode in ("L", "LA"):
        array = np.asarray(image.convert("L"))
    else:
        array = np.asarray(image.convert("RGB"))
    return _gray_to_rgb(array), mode


def decode_image(data: bytes, name: str = "upload") -> tuple[np.ndarray, str]:
    """Any supported X-ray file's bytes -> (H x W x 3 uint8 array, original mode). Raises CxrError."""
    if not data:
        raise EmptyInput(f"{name} is empty; choose a PNG, JPEG or DICOM chest X-ray.")
    if is_dicom(data, name):
        return decode_dicom(data, name)
    return decode_raster(data, name)


def encode_png(array: np.ndarray) -> bytes:
    """8-bit array -> lossless PNG bytes (grayscale when all three channels agree)."""
    if (
        array.ndim == 3
        and np.array_equal(array[..., 0], array[..., 1])
        and np.array_equal(array[..., 0], array[..., 2])
    ):
        array = array[..., 0]
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def difference_hash(array: np.ndarray, size: int = 8) -> str:
    """64-bit dHash of an image, hex; equal for near-identical images (re-encodes, small resizes)."""
    gray = Image.fromarray(array[..., 0] if array.ndim == 3 else array).resize((size + 1, size))
    pixels = np.asarray(gray, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def resize_uint8(image, image_size: int):
    """uint8 (H, W, C) tensor or batch -> uint8 at image_size x image_size (bilinear, antialiased, rounded)."""
    import tensorflow as tf  # here, not at the top: the steps that only read manifests start without it

    image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def resize_and_scale(image, image_size: int):
    """uint8 (H, W, 3) tensor or batch -> float32 in [0, 1] at image_size x image_size.

    The paper's `rescale=1/255` plus the resize (rounded to 8 bits, as the training cache keeps it); the
    one preprocessing function for evaluation, prediction and serving, and what training's uint8 cache
    gives back, bit for bit, for grayscale images.
    """
    import tensorflow as tf  # at the call, as in resize_uint8

    return tf.cast(resize_uint8(image, image_size), tf.float32) / 255.0
