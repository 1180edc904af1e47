"""Build the bundled dataset (data/covid-radiography-sample, 400 images) from the shared data folder.

The 40-image sample, plus the first `--per-class` images of each class in the order MANIFEST-more.csv
lists them (a random order: the database's file numbers follow its sources, so picking by name would
pick by source). Usage: python tools/data/bundle_dataset.py --shared ../shared/data [--per-class 180]
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

OUT = Path("data/covid-radiography-sample")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--per-class", type=int, default=180)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    sample, more = args.shared / "covid-radiography-sample", args.shared / "covid-radiography-more"
    for cls in ("COVID", "Normal"):
        (args.out / cls).mkdir(parents=True, exist_ok=True)
        for src in sorted((sample / cls).glob("*.png")):
            shutil.copyfile(src, args.out / cls / src.name)
    taken = {"COVID": 0, "Normal": 0}
    with open(args.shared / "MANIFEST-more.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            cls = row["class"]
            if row["set"] == "covid-radiography-more" and taken[cls] < args.per_class:
                shutil.copyfile(more / row["file"], args.out / cls / Path(row["file"]).name)
                taken[cls] += 1
    print({cls: len(list((args.out / cls).glob("*.png"))) for cls in taken})


if __name__ == "__main__":
    main()
