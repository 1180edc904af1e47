"""Rebuild cxr/data/external_normals from the shared copy (images and lung masks, longest side 256 px).

The shared set (chestx-ray.com's normal module as published with lung masks in pi-null-mezon/OpenIST)
is about 500 x 400 px; 256 px on the longest side keeps it near the resolution of the COVID-19
Radiography Database films (224-299 px) and the repository small. Images are resized with an
antialiased bilinear filter, masks with nearest neighbour (they stay binary 0/255).

    python tools/data/bundle_lung_masks.py --shared ../shared/data/external-normal-lungmasks
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from PIL import Image

LONGEST = 256


def resized(image: Image.Image, resample) -> Image.Image:
    w, h = image.size
    scale = LONGEST / max(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, required=True, help="the shared external-normal-lungmasks folder")
    parser.add_argument("--out", type=Path, default=Path("cxr/data/external_normals"))
    args = parser.parse_args()
    rows = list(csv.DictReader((args.shared / "MANIFEST.csv").open()))
    for sub in ("images", "masks"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    for row in rows:
        image = Image.open(args.shared / row["file"]).convert("L")
        mask = Image.open(args.shared / row["mask"]).convert("L").point(lambda v: 255 if v >= 128 else 0)
        resized(image, Image.Resampling.BILINEAR).save(args.out / row["file"])
        resized(mask, Image.Resampling.NEAREST).save(args.out / row["mask"])
    with (args.out / "MANIFEST.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} images and masks -> {args.out}")


if __name__ == "__main__":
    main()
