import pytest

from cxr.data import ingest, read_manifest
from cxr.errors import CxrError
from cxr.params import IngestParams, ValidateParams
from cxr.validation import report_index, require_valid, validate_manifest


@pytest.fixture
def manifest(tiny_data, tmp_path):
    ingest(tiny_data, tmp_path / "ds", IngestParams())
    return read_manifest(tmp_path / "ds")


def test_clean_manifest_passes_and_writes_data_docs(manifest, tmp_path):
    outcome = validate_manifest(manifest, ValidateParams(), tmp_path / "report")
    assert outcome.success and outcome.statistics["unsuccessful_expectations"] == 0
    page = report_index(tmp_path / "report")
    assert page is not None and "cxr-manifest" in page.read_text()


def test_undecodable_file_fails_and_is_named(manifest):
    manifest.loc[0, ["decodes", "error", "width", "height", "mode"]] = [False, "COVID/x.png is corrupt.", 0, 0, ""]
    outcome = validate_manifest(manifest, ValidateParams())
    assert not outcome.success
    assert "COVID/x.png is corrupt." in outcome.message()
    with pytest.raises(CxrError, match="COVID/x.png"):
        require_valid(outcome)


def test_small_images_and_bad_modes_are_named(manifest):
    manifest.loc[1, "width"] = 10
    manifest.loc[2, "mode"] = "CMYK"
    message = validate_manifest(manifest, ValidateParams()).message()
    assert manifest.loc[1, "source"] in message and "narrower than 64" in message
    assert manifest.loc[2, "source"] in message and "image mode" in message


def test_label_set_must_match(manifest):
    outcome = validate_manifest(manifest, ValidateParams(expected_classes=("COVID", "Normal", "Pneumonia")))
    assert not outcome.success and "expected_classes" in outcome.message()


def test_class_share_bounds(manifest):
    outcome = validate_manifest(manifest, ValidateParams(min_class_share=0.6, max_class_share=0.9))
    assert not outcome.success and "class shares" in outcome.message()


def test_same_content_in_two_splits_is_leakage(manifest):
    manifest.loc[3, "sha256"] = manifest.loc[8, "sha256"]
    manifest.loc[3, "split"], manifest.loc[8, "split"] = "train", "test"
    message = validate_manifest(manifest, ValidateParams()).message()
    assert "leakage" in message and manifest.loc[3, "source"] in message
