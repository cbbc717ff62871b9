"""Where a training step's time goes, phase by phase, on the host and on the GPU (it runs on the
CPU too): python scripts/profile_gpu.py --cfg resnet50_tricks [--size 224] [--steps 30]
[--set train.cuda_graph=False ...] [--out FILE.json]. Synthetic data in the config's real format;
executors/benchmark/step_profile.py says how the phases are timed."""
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.loading.loaders import build_loaders  # noqa: E402
from executors.benchmark.busy import synthetic_cfg  # noqa: E402
from executors.benchmark.runner import machine  # noqa: E402
from executors.benchmark.step_profile import format_profile, profile_steps  # noqa: E402
from executors.benchmark.workloads import quiet  # noqa: E402
from executors.trainer import Trainer  # noqa: E402
from utils.atomic_files import write_text_atomic  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402
from utils.runtime import resolve_device  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--cfg", required=True, help="config name (configs/<name>_cfg.py)")
    parser.add_argument("--size", type=int, default=224, help="training crop of the pets configs, px")
    parser.add_argument("--steps", type=int, default=30, help="steps timed in each of the two passes")
    parser.add_argument("--images-per-class", type=int, default=28, help="synthetic training images per class")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--out", type=Path, help="also write the profile as JSON to this file")
    args = parser.parse_args()
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="profile-") as workdir:
        cfg = synthetic_cfg(args.cfg, Path(workdir), device, args.size, args.images_per_class,
                            [f"device='{device}'", *args.set])
        loaders = quiet(build_loaders, cfg)
        trainer = quiet(Trainer, cfg, *loaders, val_loader=loaders.val)
        profile = profile_steps(trainer, args.steps)
    result = {"machine": machine(device), "config": args.cfg, "size": args.size, "overrides": args.set,
              "loader": type(loaders.train).__name__, **profile}
    print(format_profile(profile))
    if args.out:
        write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
        print(f"Wrote {args.out}")


if __name__ == "__main__":
    run(main)
