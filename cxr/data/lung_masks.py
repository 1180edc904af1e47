"""Films with lung-field masks (the segmenter's training data) and external films (the external check).

A masks folder holds `images/` and `masks/` (binary 0/255 PNGs of the same names) and a `MANIFEST.csv`
with `file` and `mask` columns. One ships with the package (`EXTERNAL_NORMALS`, see its README.md): 174
adult normal films from a teaching collection, none from the COVID-19 Radiography Database's sources.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cxr.data.images import IMAGE_EXTENSIONS, decode_image
from cxr.errors import CxrError

EXTERNAL_NORMALS = Path(__file__).resolve().parent / "external_normals"


def read_masked_films(folder: str | Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """(file names, 8-bit grayscale films, bool masks) of a masks folder, in manifest order."""
    folder = Path(folder) if str(folder) else EXTERNAL_NORMALS
    manifest = folder / "MANIFEST.csv"
    if not manifest.is_file():
        raise CxrError(
            f"{manifest} does not exist; point lungs.masks_dir at a folder with images/, masks/ and MANIFEST.csv, "
            "or leave it empty for the bundled one."
        )
    rows = list(csv.DictReader(manifest.open()))
    names, films, masks = [], [], []
    for row in rows:
        film, mask = folder / row["file"], folder / row["mask"]
        if not (film.is_file() and mask.is_file()):
            raise CxrError(
                f"{manifest} names {row['file']} and {row['mask']}, which are not both in {folder}; re-fetch it."
            )
        names.append(row["file"])
        films.append(decode_image(film.read_bytes(), row["file"])[0][..., 0])
        masks.append(decode_image(mask.read_bytes(), row["mask"])[0][..., 0] > 127)
    return names, films, masks


def external_files(folder: str | Path) -> list[Path]:
    """The images of an external set (empty: the bundled external normals): `images/` of a masks folder, else
    the images directly in it."""
    folder = Path(folder) if str(folder) else EXTERNAL_NORMALS
    where = folder / "images" if (folder / "images").is_dir() else folder
    if not where.is_dir():
        raise CxrError(
            f"The external set {folder} does not exist; set evaluate.external_dir to a folder of images or ''."
        )
    return sorted(p for p in where.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
