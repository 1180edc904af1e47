"""Hostile DICOM files, built here from the standard's byte layout (small on disk, huge when decoded)."""

from __future__ import annotations

import io
import struct
import zlib

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from tests.conftest import dicom_path


def _meta(transfer_syntax) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    return meta


def _image_header(rows: int, cols: int, frames: int = 1) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    out = pydicom.filebase.DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_dataset(out, ds)
    return out.getvalue()


def _pixel_data_header(length: int) -> bytes:
    return struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, length)


def _file(transfer_syntax, body: bytes) -> bytes:
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, _meta(transfer_syntax))
    return out.getvalue() + body


def deflate_bomb(inflated_bytes: int) -> bytes:
    """A Deflated Explicit VR Little Endian file whose dataset inflates to `inflated_bytes` of zero pixels."""
    side = int((inflated_bytes) ** 0.5)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunks = [compressor.compress(_image_header(side, side) + _pixel_data_header(side * side))]
    zeros, left = bytes(1 << 20), side * side
    while left:
        chunks.append(compressor.compress(zeros[: min(left, len(zeros))]))
        left -= min(left, len(zeros))
    chunks.append(compressor.flush())
    return _file(DeflatedExplicitVRLittleEndian, b"".join(chunks))


def many_frames(frames: int, rows: int, cols: int, full: bool = False) -> bytes:
    """A multi-frame file declaring `frames` frames; the pixel data holds one frame, or with `full` every
    frame (frame i filled with the value 40 * i)."""
    pixels = b"".join(bytes([40 * i % 256]) * (rows * cols) for i in range(frames if full else 1))
    return _file(ExplicitVRLittleEndian, _image_header(rows, cols, frames) + _pixel_data_header(len(pixels)) + pixels)


def zero_window_width() -> bytes:
    """A real radiograph whose VOI window has width 0 (undefined in the standard)."""
    ds = pydicom.dcmread(dicom_path())
    ds.WindowCenter, ds.WindowWidth = 512, 0
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()
