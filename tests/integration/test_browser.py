"""A real browser (Debian's headless Chromium, driven by Playwright) uploads a sample X-ray."""

import shutil

import pytest
import requests

from tests.conftest import SAMPLE

pytestmark = pytest.mark.system  # needs tools beyond the venv (make tools, .ci/run)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_upload_in_a_browser_shows_label_probability_and_heatmap(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(server["base"] + "/")
        assert "not a diagnosis" in page.inner_text("body")
        page.set_input_files("#file", str(SAMPLE / "COVID" / "COVID-3.png"))
        page.click("#submit")
        page.wait_for_selector("#heatmap")
        assert page.inner_text("#label") in {"COVID", "Normal"}
        assert 0.0 <= float(page.inner_text("#probability")) <= 1.0
        threshold = requests.get(server["base"] + "/readyz").json()["threshold"]
        assert page.inner_text("#threshold") == f"{threshold:.3f}"
        assert server["version"] in page.inner_text("#model")
        width = page.eval_on_selector("#heatmap", "img => img.naturalWidth")
        assert width == 299  # the Grad-CAM overlay decoded and rendered at the upload's size
        page.set_input_files("#file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an x-ray"})
        page.click("#submit")
        assert "not a PNG, JPEG or DICOM" in page.inner_text("#error")
        browser.close()


@pytest.fixture(autouse=True)
def _needs_chromium():
    assert shutil.which("chromium") or shutil.which("/usr/bin/chromium"), (
        "Chromium is missing: install Debian's chromium package (.ci/run does)"
    )
