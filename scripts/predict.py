"""Classify images with a trained checkpoint: prints the top-k classes with probabilities.

Any image file is read (every PIL mode, 16-bit, transparency, huge JPEGs at a reduced
scale); how a file was adapted (e.g. a KMNIST glyph drawn dark on light, inverted) is
printed as a note on stderr. A file that is not a readable image gets an error line on stderr
and the others are still predicted; the exit status is then 2.

--tta MODE averages the logits of test-time views of each image (executors/tools/tta.py; default:
the run's own eval.tta).

python scripts/predict.py --checkpoint PATH [--top-k K] [--tta none|flip|flip_crops] IMAGE [IMAGE ...]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.checkpoints.inference import predict_files  # noqa: E402
from executors.tools.tta import TTA_MODES  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402
from utils.errors import DataError  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a best.pt or last.pt")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation (default: the config's eval.tta)")
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args()
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1, not {args.top_k}")
    failed = 0
    predictions = predict_files(args.checkpoint, args.images, args.top_k, args.tta)
    for path, (top, notes, error) in zip(args.images, predictions):
        for note in notes:
            print(f"note: {path}: {note}", file=sys.stderr)
        if error is not None:
            failed += 1
            print(f"error: {error}", file=sys.stderr, flush=True)
        else:
            print(f"{path}: " + ", ".join(f"{name} {probability:.3f}" for name, probability in top), flush=True)
    if failed:
        raise DataError(f"{failed} of {len(args.images)} files could not be read as images (each is named above).")


if __name__ == "__main__":
    run(main)
