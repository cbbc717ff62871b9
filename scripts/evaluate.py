"""Evaluate a checkpoint on the test split: prints metrics as JSON, writes the confusion matrix.

python scripts/evaluate.py --checkpoint PATH [--out DIR] [--set KEY=VALUE ...]
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.launch import evaluate_checkpoint  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402
from utils.visualization import plot_confusion_matrix  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a best.pt or last.pt")
    parser.add_argument("--out", type=Path, help="where to write the image (default: the checkpoint's folder)")
    parser.add_overrides()
    args = parser.parse_args()
    result, class_names = evaluate_checkpoint(args.checkpoint, args.set)
    out_dir = args.out or args.checkpoint.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    image = out_dir / f"confusion_matrix_{args.checkpoint.stem}_eval.png"
    figure = plot_confusion_matrix(result.pop("confusion"), class_names, title=f"Test set: {args.checkpoint}")
    figure.savefig(image, dpi=100)
    print(json.dumps({**result, "confusion_matrix_image": str(image)}, indent=2))


if __name__ == "__main__":
    run(main)
