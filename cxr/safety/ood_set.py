"""An out-of-distribution image set built offline, to measure the input gate (cxr/safety/input_gate.py).

Everything comes from installed packages or is drawn here, seeded: the non-chest DICOM images of
`pydicom-data` (CT, MR, ultrasound, nuclear medicine, a knee radiograph, secondary captures), charts
drawn with matplotlib, rendered text and a rendered web page (like a screenshot of the upload page),
and the natural photographs scikit-learn ships, in colour and in grey. The DICOMs are scored on their
pixels only, as if exported to PNG: their headers would be refused before any pixel is read
(cxr/safety/dicom_scope.py), and the pixel gate must hold without them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from sklearn.datasets import load_sample_images

from cxr.data.images import decode_dicom
from cxr.errors import CxrError

# pydicom-data files that are not chest radiographs, one per distinct image (no re-encodings of one)
DICOM_FILES = {
    "693_UNCR.dcm": "CT",
    "eCT_Supplemental.dcm": "CT",
    "explicit_VR-UN.dcm": "CT",
    "MR2_UNCR.dcm": "MR",
    "MR-SIEMENS-DICOM-WithOverlays.dcm": "MR",
    "emri_small.dcm": "MR",
    "US1_UNCR.dcm": "US",
    "OBXXXX1A.dcm": "US",
    "gdcm-US-ALOKA-16.dcm": "US",
    "color-pl.dcm": "US",
    "JPEG2000_UNC.dcm": "NM",
    "RG3_UNCR.dcm": "knee radiograph",
    "SC_rgb.dcm": "secondary capture",
    "mlut_18.dcm": "secondary capture",
    "vlut_04.dcm": "secondary capture",
    "liver.dcm": "segmentation",
}


@dataclass(frozen=True)
class OodImage:
    name: str
    kind: str  # dicom:<modality> | chart | text | page | natural
    array: np.ndarray  # H x W x 3 uint8, as decode_image returns


def pydicom_data_dir() -> Path:
    """The folder of DICOM files the `pydicom-data` package installs (module `data_store`)."""
    spec = find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        raise CxrError("The OOD set needs the pydicom-data package; install it with `pip install pydicom-data==1.0.0`.")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _dicoms() -> list[OodImage]:
    folder = pydicom_data_dir()
    return [
        OodImage(f"pydicom-data/{name}", f"dicom:{kind}", decode_dicom((folder / name).read_bytes(), name)[0])
        for name, kind in DICOM_FILES.items()
    ]


def _figure_array(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return np.asarray(Image.open(buf).convert("RGB"))


def _charts(rng: np.random.Generator, n: int) -> list[OodImage]:
    matplotlib.use("Agg")

    images = []
    kinds = ("line", "bar", "scatter", "pie", "histogram", "heatmap")
    for i in range(n):
        kind = kinds[i % len(kinds)]
        fig, ax = plt.subplots(figsize=(4, 4))
        x = np.arange(12)
        if kind == "line":
            for _ in range(3):
                ax.plot(x, np.cumsum(rng.normal(size=12)))
        elif kind == "bar":
            ax.bar(x, rng.uniform(1, 10, 12))
        elif kind == "scatter":
            ax.scatter(rng.normal(size=80), rng.normal(size=80), c=rng.uniform(size=80))
        elif kind == "pie":
            ax.pie(rng.uniform(1, 5, 5))
        elif kind == "histogram":
            ax.hist(rng.normal(size=500), bins=25)
        else:
            ax.imshow(rng.uniform(size=(10, 10)), cmap="gray" if i % 2 else "viridis")
        ax.set_title(f"{kind} {i}")
        images.append(OodImage(f"chart-{i:02d}-{kind}.png", "chart", _figure_array(fig)))
        plt.close(fig)
    return images


WORDS = (
    "patient report model threshold probability upload image chest radiograph result version data "
    "pipeline training validation the of and to in is for with on at by"
).split()


def _text(rng: np.random.Generator, n: int) -> list[OodImage]:
    font = ImageFont.load_default(size=18)
    images = []
    for i in range(n):
        dark = i % 2 == 1  # white on black too: an X-ray is mostly a light shape on a dark field
        img = Image.new("L", (420, 420), 0 if dark else 255)
        draw = ImageDraw.Draw(img)
        for row in range(16):
            line = " ".join(rng.choice(WORDS, size=5))
            draw.text((12, 10 + row * 25), line, fill=255 if dark else 0, font=font)
        images.append(OodImage(f"text-{i:02d}.png", "text", np.asarray(img.convert("RGB"))))
    return images


def _pages(rng: np.random.Generator, n: int) -> list[OodImage]:
    """Drawn like a screenshot of this project's upload page: a title, a notice box, a dashed drop
    zone, a button and some text."""
    title, body = ImageFont.load_default(size=26), ImageFont.load_default(size=15)
    images = []
    for i in range(n):
        img = Image.new("RGB", (640, 480), "white")
        draw = ImageDraw.Draw(img)
        draw.text((20, 16), "Chest X-ray: COVID-19 classifier", fill="black", font=title)
        draw.rectangle((20, 60, 620, 110), fill=(255, 244, 229), outline=(240, 182, 74))
        draw.text((30, 75), "Research tool, not a diagnosis.", fill="black", font=body)
        top = 130 + int(rng.integers(0, 40))
        for x in range(20, 620, 12):  # the dashed drop zone
            draw.line((x, top, x + 6, top), fill="gray", width=2)
            draw.line((x, top + 120, x + 6, top + 120), fill="gray", width=2)
        draw.text((150, top + 50), "Choose or drop a chest X-ray", fill="black", font=body)
        draw.rectangle((20, top + 140, 110, top + 170), fill=(230, 230, 230), outline="gray")
        draw.text((35, top + 147), "Predict", fill="black", font=body)
        for row in range(4):
            draw.text((20, top + 190 + row * 22), " ".join(rng.choice(WORDS, size=8)), fill="black", font=body)
        images.append(OodImage(f"page-{i:02d}.png", "page", np.asarray(img)))
    return images


def _natural(rng: np.random.Generator, crops: int) -> list[OodImage]:
    images = []
    for name, photo in zip(("china", "flower"), load_sample_images().images, strict=True):
        grey = np.asarray(Image.fromarray(photo).convert("L").convert("RGB"))
        images += [OodImage(f"{name}.jpg", "natural", photo), OodImage(f"{name}-grey.jpg", "natural", grey)]
        for k in range(crops):  # square crops, grey ones too: closer to a radiograph's shape and colour
            side = int(rng.integers(200, 400))
            y, x = int(rng.integers(0, photo.shape[0] - side)), int(rng.integers(0, photo.shape[1] - side))
            crop = (grey if k % 2 else photo)[y : y + side, x : x + side]
            images.append(OodImage(f"{name}-crop-{k}.jpg", "natural", np.ascontiguousarray(crop)))
    return images


def build_ood_set(seed: int = 0, charts: int = 12, texts: int = 6, pages: int = 4, crops: int = 4) -> list[OodImage]:
    """The OOD set (about 60 images), the same for the same seed."""
    rng = np.random.default_rng(seed)
    return _dicoms() + _charts(rng, charts) + _text(rng, texts) + _pages(rng, pages) + _natural(rng, crops)
