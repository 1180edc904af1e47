import pytest

from cxr.data.manifest import ingest, read_manifest
from cxr.data.validation import report_index, require_valid, validate_manifest
from cxr.errors import CxrError
from cxr.params import IngestParams, ValidateParams


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


def test_near_identical_images_in_two_splits_are_leakage_and_named(tiny_data, tmp_path):
    import io

    from PIL import Image

    original = tiny_data / "COVID" / "COVID-0.png"
    copy = Image.open(original).resize((72, 72))
    buffer = io.BytesIO()
    copy.convert("L").save(buffer, "JPEG", quality=80)
    (tiny_data / "COVID" / "COVID-0-copy.jpg").write_bytes(buffer.getvalue())
    ingest(tiny_data, tmp_path / "ds", IngestParams())
    manifest = read_manifest(tmp_path / "ds")
    pair = manifest[manifest["source"].isin(["COVID/COVID-0.png", "COVID/COVID-0-copy.jpg"])]
    assert pair["sha256"].nunique() == 2 and pair["split"].nunique() == 1  # the splitter kept them together
    assert validate_manifest(manifest, ValidateParams()).success
    other = next(s for s in ("train", "val", "test") if s != pair["split"].iloc[0])
    manifest.loc[manifest["source"] == "COVID/COVID-0-copy.jpg", "split"] = other  # split by another tool
    message = validate_manifest(manifest, ValidateParams()).message()
    assert "near-identical images sit in different splits" in message
    assert "COVID/COVID-0-copy.jpg" in message and "COVID/COVID-0.png" in message
