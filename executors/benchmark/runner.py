"""Run the benchmark's workloads (executors/benchmark/workloads.py), print a table, write the JSON."""
import datetime
import json
import os
import platform
import signal
import tempfile
from pathlib import Path

import torch

from executors.benchmark.busy import busy_rows, evaluation_rows
from executors.benchmark.workloads import gpu_rows, kmnist_mlp, pets_input, pets_train
from utils.atomic_files import write_text_atomic
from utils.errors import ConfigError, Interrupted
from utils.runtime import resolve_device

CPU_WORKLOADS = {
    "kmnist_mlp": lambda workdir, quick, device: kmnist_mlp(workdir, quick, device),
    "pets_input_224": lambda workdir, quick, device: pets_input(workdir, quick, device, 224),
    "pets_input_224_device": lambda workdir, quick, device: pets_input(workdir, quick, device, 224, "device"),
    "pets_resnet50_64": lambda workdir, quick, device: pets_train(workdir, quick, device, "ResNet50", 64),
    "pets_vgg16_64": lambda workdir, quick, device: pets_train(workdir, quick, device, "VGG16", 64),
}


# CUDA only: the 224 px rows (workloads.gpu_rows), the busy rows and the evaluation batch sizes (busy.py)
GPU_WORKLOADS = ("gpu", "busy", "eval")


def machine(device) -> dict:
    """What the numbers were measured on."""
    return {"date": datetime.date.today().isoformat(), "cpu_count": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def format_table(rows) -> str:
    header = (f"{'workload':<34} {'ours img/s':>11} {'baseline':>10} {'ratio':>6} {'threads':>8} "
              f"{'ours s/epoch':>12} {'base s/epoch':>12}")
    lines = [header, "-" * len(header)]
    for r in rows:
        threads = f"{r['ours_threads'] or '-'}/{r['baseline_threads'] or '-'}"
        lines.append(f"{r['workload']:<34} {r['ours_images_per_second']:>11.0f} {r['baseline_images_per_second']:>10.0f} "
                     f"{r['ratio']:>5.2f}x {threads:>8} {r['ours_epoch_seconds']:>12.2f} "
                     f"{r['baseline_epoch_seconds']:>12.2f}")
    return "\n".join(lines)


def run_benchmark(quick, device_name="auto", out=None, only=None) -> dict:
    """Run every workload for the device (or those in `only`), print the results and
    return {"machine", "quick", "workloads", "gpu"}; with `out`, also write them as JSON."""
    device = resolve_device(device_name)
    unknown = set(only or ()) - set(CPU_WORKLOADS) - set(GPU_WORKLOADS)
    if unknown:
        raise ConfigError(f"Unknown workload(s) {', '.join(sorted(unknown))}: choose from "
                          f"{', '.join(CPU_WORKLOADS)}, {', '.join(GPU_WORKLOADS)}.")
    result = {"machine": machine(device), "quick": quick, "workloads": [], "gpu": None}
    print(f"Benchmark on {result['machine']}{' (quick)' if quick else ''}")
    threads_before = torch.get_num_threads()
    try:
        with tempfile.TemporaryDirectory(prefix="benchmark-") as workdir:
            measure(result, Path(workdir), quick, device, only, out)
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM through utils.cli
        rows = len(result["workloads"])
        kept = f"the {rows} rows measured before it are in {out}" if out and rows else "nothing was saved"
        raise Interrupted(getattr(error, "signal_number", signal.SIGINT), kept) from None
    finally:
        torch.set_num_threads(threads_before)
    print()
    print(format_table(result["workloads"]))
    if result["gpu"]:
        print(json.dumps(result["gpu"], indent=2))
    save(result, out)
    if out is not None:
        print(f"Wrote {out}")
    return result


def measure(result, workdir, quick, device, only, out):
    """Append the rows of the selected workloads to result["workloads"], saving after each
    per-workload row (run_benchmark saves the GPU rows with the rest at the end)."""
    for name, workload in CPU_WORKLOADS.items():
        if only and name not in only:
            continue
        result["workloads"].append(workload(workdir, quick, device))
        print(format_table(result["workloads"][-1:]).splitlines()[-1], flush=True)
        save(result, out)
    if device.type == "cuda" and (not only or "gpu" in only):
        rows, summary = gpu_rows(workdir, quick, device)
        result["workloads"] += rows
        result["gpu"] = summary
        save(result, out)
    if device.type == "cuda" and only and "busy" in only:  # named only: it takes minutes
        result["busy"] = busy_rows(workdir, device)
        print(format_busy(result["busy"]), flush=True)
        save(result, out)
    if device.type == "cuda" and only and "eval" in only:
        result["eval"] = evaluation_rows(workdir, device)
        for config, rates in result["eval"]["models"].items():
            print(f"{config:<16} evaluation " + ", ".join(f"batch {b}: {rates[b]['median']:,.0f} img/s"
                                                          for b in rates if b != "images"), flush=True)


def format_busy(busy) -> str:
    """The busy rows as lines: per model and way of stepping, images/s (median of the rounds, min-max)
    and the fraction of the bare-step rate; then ours against torchvision."""
    lines = []
    for config, model in busy["models"].items():
        if "error" in model:
            lines.append(f"{config:<16} failed: {model['error']}")
            continue
        for name, rate in model["images_per_second"].items():
            fraction = model["fraction_of_bare"].get(name)
            spread = f"({rate['min']:,.0f}-{rate['max']:,.0f})"
            lines.append(f"{config:<16} {name:<18} {rate['median']:>8,.0f} img/s {spread}"
                         + (f"  {fraction:.2f} of bare" if fraction is not None else ""))
    versus = busy["ours_vs_torchvision"]
    lines.append(f"ours (B) {versus['ours_b']['median']:,.0f} vs torchvision {versus['torchvision']['median']:,.0f} "
                 f"img/s bare: {versus['ratio']:.2f}x")
    return "\n".join(lines)


def save(result, out):
    """Write `result` as JSON to `out` (if given), after every workload: an interrupted run
    keeps the rows it measured."""
    if out is not None:
        write_text_atomic(out, json.dumps(result, indent=2) + "\n")  # creates out's folder
