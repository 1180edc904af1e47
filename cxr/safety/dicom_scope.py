"""What the model is for, read from a DICOM header before any pixel is scored.

The model reads frontal (PA/AP) chest radiographs, CR or DX, prepared for presentation. A DICOM file
that says otherwise is refused with one sentence naming the field. Fields that are absent decide
nothing here (many exports drop them); the pixel gate (cxr/safety/input_gate.py) still applies. Only these four
technical fields are read, and the institution (`dicom_site`: where the film was taken, for the web app's
per-site validation); no patient field is read, kept or logged.
"""

from __future__ import annotations

import io
import re

import pydicom

from cxr.data.images import _check_inflated_size, is_dicom
from cxr.errors import CxrError

ALLOWED_MODALITIES = ("CR", "DX")
CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG", "TORSO")
FRONTAL_VIEWS = ("PA", "AP", "POSTERO_ANTERIOR", "ANTERO_POSTERIOR")
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "LLD", "RLD")  # DICOM ViewPosition defined terms and variants


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword)
    return str(value).strip().upper() if value not in (None, "") else ""


def dicom_refusal(data: bytes, name: str) -> str | None:
    """A sentence when the DICOM header puts the image outside the model's intended use; else None
    (also for non-DICOM bytes and headers that cannot be read: decoding decides about those)."""
    if not is_dicom(data, name):
        return None
    try:
        _check_inflated_size(data, name)
        ds = pydicom.dcmread(
            io.BytesIO(data),
            force=True,
            stop_before_pixels=True,
            specific_tags=["Modality", "BodyPartExamined", "ViewPosition", "PresentationIntentType"],
        )
    except CxrError:
        return None  # decoding refuses it with its own sentence
    except Exception:
        return None
    modality, part = _text(ds, "Modality"), _text(ds, "BodyPartExamined")
    view, intent = _text(ds, "ViewPosition"), _text(ds, "PresentationIntentType")
    if modality and modality not in ALLOWED_MODALITIES:
        return (
            f"{name} is a DICOM of modality {modality}, not a radiograph (CR or DX); this model reads only "
            "frontal chest X-rays."
        )
    if part and part not in CHEST_BODY_PARTS:
        return (
            f"{name} is a DICOM whose body part is {part}, not the chest; this model reads only frontal chest X-rays."
        )
    if view in LATERAL_VIEWS or (view and view not in FRONTAL_VIEWS and "LAT" in view):
        return f"{name} is a lateral view (ViewPosition {view}); this model reads only frontal (PA or AP) chest X-rays."
    if intent == "FOR PROCESSING":
        return (
            f"{name} is a 'FOR PROCESSING' image (raw detector data, not prepared for viewing); send the "
            "'FOR PRESENTATION' image."
        )
    return None


SITE_CHARS = 64  # a site name is kept to this many characters (the records store's column)


def site_name(text: str) -> str:
    """A site as the records keep it: whitespace collapsed, at most SITE_CHARS characters."""
    return re.sub(r"\s+", " ", str(text)).strip()[:SITE_CHARS]


def dicom_site(data: bytes, name: str = "upload") -> str:
    """The DICOM header's InstitutionName (where the film was taken), or '' (not DICOM, absent, unreadable)."""
    if not is_dicom(data, name):
        return ""
    try:
        _check_inflated_size(data, name)
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True, specific_tags=["InstitutionName"])
        return site_name(ds.get("InstitutionName") or "")
    except Exception:  # noqa: BLE001 (decoding refuses an unreadable file with its own sentence)
        return ""
