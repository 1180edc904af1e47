"""Training input pipeline: the project's tf.data pipeline against the paper's ImageDataGenerator.

Same images (the 40-image sample copied to --images files), same augmentation settings (the paper profile's),
same image size and batch size; the time of epochs 2 and later (the project's cache is filled in
epoch 1; ImageDataGenerator has none: that is the paper's loader). Also the bytes each cached image
takes. Last line: ratio = project images/s / ImageDataGenerator images/s (same run).

    .venv/bin/python bench/input_pipeline.py [--images 400] [--size 256] [--batch 32] [--epochs 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def copies(sample: Path, out: Path, n: int):
    """`n` PNG files cycling through the sample's images, with a class column; returns the frame."""
    import pandas as pd

    files = sorted(sample.glob("*/*.png"))
    rows = []
    for i in range(n):
        source = files[i % len(files)]
        target = out / source.parent.name / f"{i:05d}-{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        rows.append({"file": str(target.relative_to(out)), "label": source.parent.name})
    return pd.DataFrame(rows)


def timed_epochs(batches_of_epoch, epochs: int, images: int) -> float:
    """images/s over epochs 2..epochs (epoch 1 warms up and fills caches)."""
    for _ in batches_of_epoch():
        pass
    start = time.perf_counter()
    for _ in range(epochs - 1):
        for _ in batches_of_epoch():
            pass
    return images * (epochs - 1) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    from cxr.data.augment import build_augmenter, load_gray, load_image, make_dataset
    from cxr.params import load_params

    params = load_params(profile="paper")  # the paper's augmentation, the one ImageDataGenerator ran
    a = params.augment
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        frame = copies(Path(params.ingest.data_dir), root, args.images)

        dataset = make_dataset(
            frame, root, "COVID", args.size, args.batch, build_augmenter(a, seed=1), shuffle_buffer=1024, seed=1
        )
        project = timed_epochs(lambda: iter(dataset), args.epochs, args.images)

        paper = ImageDataGenerator(
            rotation_range=a.rotation_deg,
            width_shift_range=a.width_shift,
            height_shift_range=a.height_shift,
            shear_range=a.shear,
            zoom_range=a.zoom,
            horizontal_flip=a.horizontal_flip,
            rescale=1.0 / 255,
        )
        flow = paper.flow_from_dataframe(
            frame, directory=str(root), x_col="file", y_col="label", target_size=(args.size, args.size),
            batch_size=args.batch, class_mode="binary", shuffle=True, seed=1,
        )  # fmt: skip
        steps = int(np.ceil(args.images / args.batch))

        def paper_epoch():
            return (flow[i] for i in range(steps))

        baseline = timed_epochs(paper_epoch, args.epochs, args.images)

        first = str(root / frame["file"].iloc[0])
        cached = load_gray(first, args.size).numpy().nbytes  # what the cache holds per image now
        before = load_image(first, args.size).numpy().nbytes  # float32 RGB: what it held before
    full = 21165  # images in the COVID-19 Radiography Database
    print(f"{args.images} images, {args.size} px, batch {args.batch}, epochs 2-{args.epochs} timed")
    print(f"ImageDataGenerator (the paper's loader): {baseline:8.1f} images/s")
    print(f"project tf.data pipeline:                {project:8.1f} images/s")
    print(f"cached bytes per image: {cached:,} (uint8, one channel); before: {before:,} (float32 RGB)")
    gb = full * cached / 1e9, full * before / 1e9
    print(f"the full database ({full:,} images) cached: {gb[0]:.2f} GB; before {gb[1]:.1f} GB")
    print(f"ratio: {project / baseline:.2f}")


if __name__ == "__main__":
    main()
