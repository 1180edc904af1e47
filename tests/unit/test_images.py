import io

import numpy as np
import pydicom
import pytest
from PIL import Image

from cxr.data.images import decode_image, difference_hash, encode_png, resize_and_scale
from cxr.errors import CxrError
from tests.conftest import dicom_path, synthetic_xray


def png_bytes(array, mode=None, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def test_8bit_grayscale_png_becomes_rgb_with_same_values():
    gray = synthetic_xray(1, 48)
    array, mode = decode_image(png_bytes(gray))
    assert mode == "L" and array.shape == (48, 48, 3)
    assert np.array_equal(array[..., 0], gray) and np.array_equal(array[..., 2], gray)


@pytest.mark.parametrize("bits, scale", [(16, 257), (12, 16)])
def test_deep_grayscale_is_scaled_by_its_bit_depth_to_the_same_8bit_pixels(bits, scale):
    """The same picture stored at 8, 12 or 16 bits decodes to the same pixels (no per-image stretch)."""
    gray = synthetic_xray(2, 40)
    image = Image.fromarray(gray.astype(np.int32) * scale).convert("I;16")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    array, mode = decode_image(buf.getvalue())
    assert mode.startswith("I") and array.dtype == np.uint8
    assert np.abs(array[..., 0].astype(int) - gray.astype(int)).max() <= 1


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_and_alpha_are_accepted(mode):
    rgb = np.stack([synthetic_xray(3, 32)] * (4 if mode == "RGBA" else 3), axis=-1)
    array, got = decode_image(png_bytes(rgb))
    assert got == mode and array.shape == (32, 32, 3)


def test_jpeg_is_accepted():
    array, mode = decode_image(png_bytes(synthetic_xray(4, 64), fmt="JPEG"))
    assert mode == "L" and array.shape == (64, 64, 3)


def test_real_dicom_is_windowed_and_monochrome1_inverted():
    data = dicom_path().read_bytes()
    array, photometric = decode_image(data, "RG1_UNCR.dcm")
    assert photometric == "MONOCHROME1" and array.shape == (1955, 1841, 3)
    raw = pydicom.dcmread(dicom_path()).pixel_array.astype(float)
    # inverted: where the raw value is high (dense in MONOCHROME1 = dark), the output is dark
    high, low = raw > np.percentile(raw, 90), raw < np.percentile(raw, 10)
    assert array[..., 0][high].mean() < array[..., 0][low].mean()


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "is empty"),
        (b"this is not an image at all", "not a PNG, JPEG or DICOM"),
    ],
)
def test_bad_bytes_get_one_sentence(data, expected):
    with pytest.raises(CxrError, match=expected):
        decode_image(data, "upload.png")


def test_truncated_png_is_reported_as_corrupt():
    data = png_bytes(synthetic_xray(5, 64))
    with pytest.raises(CxrError, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2], "half.png")


def test_decompression_bomb_is_refused():
    buf = io.BytesIO()
    Image.new("L", (12000, 8000)).save(buf, format="PNG")  # 96 MP of zeros compresses to ~100 kB
    with pytest.raises(CxrError, match="pixel limit|decompression bomb"):
        decode_image(buf.getvalue(), "bomb.png")


def test_dicom_without_pixel_data_is_refused(tmp_path):
    ds = pydicom.dcmread(dicom_path())
    del ds.PixelData
    path = tmp_path / "nopixels.dcm"
    ds.save_as(path)
    with pytest.raises(CxrError, match="without pixel data"):
        decode_image(path.read_bytes(), "nopixels.dcm")


def test_png_round_trip_is_lossless_and_dhash_stable():
    gray = synthetic_xray(6, 64)
    array, _ = decode_image(png_bytes(gray))
    again, _ = decode_image(encode_png(array))
    assert np.array_equal(array, again)
    assert difference_hash(array) == difference_hash(again)
    assert difference_hash(array) != difference_hash(decode_image(png_bytes(synthetic_xray(7, 64, True)))[0])


def test_resize_and_scale_outputs_unit_range_at_model_size():
    out = np.asarray(resize_and_scale(np.full((50, 70, 3), 255, np.uint8), 32))
    assert out.shape == (32, 32, 3) and out.dtype == np.float32
    assert np.allclose(out, 1.0)


def test_hostile_dicoms_are_refused_in_a_sentence_with_bounded_memory():
    """A deflate bomb (≈1000:1) is refused after inflating at most MAX_INFLATED_BYTES, in 1 MB chunks; a
    header declaring thousands of frames is refused before any pixel is decoded."""
    import resource

    from cxr.data.images import MAX_INFLATED_BYTES
    from cxr.errors import InputTooLarge
    from tests.hostile import deflate_bomb, many_frames

    bomb = deflate_bomb(MAX_INFLATED_BYTES + (64 << 20))
    assert len(bomb) < (MAX_INFLATED_BYTES + (64 << 20)) / 500
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputTooLarge, match="deflated DICOM that inflates to more than"):
        decode_image(bomb, "bomb.dcm")
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 < 64 << 20  # KiB on Linux
    with pytest.raises(InputTooLarge, match="holds 5000 frame.* over the 90,000,000-sample limit"):
        decode_image(many_frames(5000, 256, 256), "frames.dcm")


def test_a_small_deflated_dicom_and_a_zero_window_width_still_decode():
    from tests.hostile import deflate_bomb, zero_window_width

    array, _ = decode_image(deflate_bomb(256 * 256), "ok.dcm")
    assert array.shape == (256, 256, 3)
    array, mode = decode_image(zero_window_width(), "ww0.dcm")  # the window is ignored, not a crash
    assert mode == "MONOCHROME1" and array.dtype == np.uint8 and array.std() > 10


def test_the_first_frame_of_a_multiframe_dicom_is_used():
    from tests.hostile import many_frames

    array, _ = decode_image(many_frames(3, 64, 48, full=True), "three.dcm")
    assert array.shape == (64, 48, 3) and int(array.max()) == 0  # frame 0 (zeros), not frame 1 or 2


def test_bytes_after_the_end_of_a_deflated_dicom_do_not_hang_the_size_check():
    """Past the deflate stream's end zlib neither inflates nor rejects the rest: the check stops there (it
    once looped forever on such a file, found by the serving fuzz test)."""
    import threading

    from cxr.data.images import _check_inflated_size
    from tests.hostile import deflate_bomb

    done = threading.Event()
    worker = threading.Thread(
        target=lambda: (_check_inflated_size(deflate_bomb(8 << 20) + b"junk" * 10, "tail.dcm"), done.set()),
        daemon=True,
    )
    worker.start()
    assert done.wait(30), "the size check did not finish"
