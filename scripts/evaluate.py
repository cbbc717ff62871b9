"""Evaluate a checkpoint on the test split: prints metrics as JSON, writes the confusion matrix.

The image goes to --out DIR, by default beside the checkpoint. Where it cannot be written (a
read-only folder, e.g. a Kaggle input) the metrics are still printed, with
"confusion_matrix_image": null, and a warning on stderr says why and to pass --out; the exit
status stays 0.

--tta MODE (or --set eval.tta=MODE; default: the run's own eval.tta) also scores test-time
augmentation in the same pass (executors/tools/tta.py): the JSON then holds the plain loss,
accuracy and balanced_accuracy and, beside them, tta_loss, tta_accuracy and
tta_balanced_accuracy; "tta" names the mode.

python scripts/evaluate.py --checkpoint PATH [--out DIR] [--tta none|flip|flip_crops] [--set KEY=VALUE ...]
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.checkpoints.inference import evaluate_checkpoint  # noqa: E402
from executors.tools.tta import TTA_MODES  # noqa: E402
from utils.atomic_files import save_figure_atomic  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402
from utils.errors import StorageError  # noqa: E402
from utils.visualization import CONFUSION_DPI, plot_confusion_matrix  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a best.pt or last.pt")
    parser.add_argument("--out", type=Path, help="where to write the image (default: the checkpoint's folder)")
    parser.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation scored beside the plain metrics "
                                                         "(default: the config's eval.tta)")
    parser.add_overrides()
    args = parser.parse_args()
    result, class_names = evaluate_checkpoint(args.checkpoint, args.set, args.tta)
    result.pop("tta_confusion", None)
    image = (args.out or args.checkpoint.parent) / f"confusion_matrix_{args.checkpoint.stem}_eval.png"
    figure = plot_confusion_matrix(result.pop("confusion"), class_names, title=f"Test set: {args.checkpoint}")
    try:  # atomic: a link planted at `image` is replaced, never written through
        save_figure_atomic(figure, image, dpi=CONFUSION_DPI)
        problem = None
    except StorageError as error:
        problem = str(error)
    print(json.dumps({**result, "confusion_matrix_image": None if problem else str(image)}, indent=2), flush=True)
    if problem:
        print(f"warning: {problem} The metrics above are complete; pass --out DIR to write the confusion matrix "
              f"image to a writable folder.", file=sys.stderr)


if __name__ == "__main__":
    run(main)
