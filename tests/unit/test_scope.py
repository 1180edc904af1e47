"""DICOM headers that put an image outside the model's intended use are refused before any pixel is
read, with a sentence naming the field; absent fields decide nothing."""

import io

import pytest

from cxr.safety.dicom_scope import dicom_refusal, dicom_site
from cxr.safety.ood_set import pydicom_data_dir
from tests.conftest import dicom_path


def dicom(**fields) -> bytes:
    """A minimal 8-bit DICOM with the given header fields."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 8, 8, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.zeros((8, 8), np.uint8).tobytes()
    for key, value in fields.items():
        setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "fields, sentence",
    [
        ({"Modality": "CT"}, "modality CT, not a radiograph (CR or DX)"),
        ({"Modality": "MR", "BodyPartExamined": "CHEST"}, "modality MR"),
        ({"Modality": "DX", "BodyPartExamined": "KNEE"}, "body part is KNEE, not the chest"),
        ({"Modality": "CR", "BodyPartExamined": "CHEST", "ViewPosition": "LL"}, "lateral view (ViewPosition LL)"),
        ({"Modality": "DX", "ViewPosition": "RL"}, "lateral view"),
        ({"Modality": "DX", "PresentationIntentType": "FOR PROCESSING"}, "'FOR PROCESSING' image"),
    ],
)
def test_out_of_scope_headers_are_refused_with_the_field(fields, sentence):
    refusal = dicom_refusal(dicom(**fields), "scan.dcm")
    assert refusal and refusal.startswith("scan.dcm ") and sentence in refusal


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"Modality": "CR", "BodyPartExamined": "CHEST", "ViewPosition": "PA"},
        {"Modality": "DX", "BodyPartExamined": "chest", "ViewPosition": "AP"},
        {"Modality": "DX", "PresentationIntentType": "FOR PRESENTATION"},
    ],
)
def test_frontal_chest_radiographs_and_missing_fields_pass(fields):
    assert dicom_refusal(dicom(**fields), "scan.dcm") is None


def test_real_files_from_pydicom_data():
    folder = pydicom_data_dir()
    assert dicom_refusal(dicom_path().read_bytes(), "RG1_UNCR.dcm") is None  # CR, CHEST, PA
    assert "body part is EXTREMITY" in dicom_refusal((folder / "RG3_UNCR.dcm").read_bytes(), "knee.dcm")
    assert "modality MR" in dicom_refusal((folder / "MR2_UNCR.dcm").read_bytes(), "mr.dcm")
    assert "modality US" in dicom_refusal((folder / "US1_UNCR.dcm").read_bytes(), "us.dcm")


def test_non_dicom_and_garbage_are_left_to_decoding():
    assert dicom_refusal(b"\x89PNG\r\n\x1a\nnot really", "x.png") is None
    assert dicom_refusal(b"\0" * 128 + b"DICM" + b"\xff" * 50, "broken.dcm") is None


def test_the_site_is_the_dicom_institution_and_nothing_for_other_files():
    assert dicom_site(dicom(InstitutionName="  St   Elsewhere  General ")) == "St Elsewhere General"
    assert dicom_site(dicom(InstitutionName="x" * 100)) == "x" * 64  # the records' column
    assert dicom_site(dicom()) == "" and dicom_site(dicom_path().read_bytes()) == "Philips Medical Systems Hamburg"
    assert dicom_site(b"\x89PNG\r\n\x1a\n", "x.png") == "" and dicom_site(b"garbage", "x.dcm") == ""
