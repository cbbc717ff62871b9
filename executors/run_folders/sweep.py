"""Repeated runs: every config with every seed, one run directory each, surviving interruption
and failures.

A run is named `<exp_name>_seed<k>` and trains with seed k; a quick or smoke sweep has its own
runs folder and names (executors/run_folders/run_kinds.py). Before each run the sweep looks
at that name's folders: the newest with a last.pt whose summary.json covers the planned
epochs is finished (skipped); a last.pt without such a summary is interrupted (resumed with
`--resume auto` semantics); a folder left before its first checkpoint (killed, or failed in
its first epoch) is restarted in that same folder (executors/run_folders/run_dir.claim_run_dir); no
folder means new. So a sweep stopped by a session limit is started again with the same
command and continues where it stopped, and a failed run is tried again in its own folder,
never in a new one.

A run that fails (TrainingError: the loss diverged; UserError or OSError: bad input, e.g. a
resume that would change what the run trained) is reported at once and the sweep goes on;
the failures are listed at the end (report). Ctrl-C or SIGTERM stops the whole sweep.
"""
import json
import sys
from pathlib import Path
from typing import NamedTuple, Optional

from executors.launch import train_experiment
from executors.run_folders.run_dir import abandoned, epochs_completed, runs_of
from executors.run_folders.run_kinds import kind_config
from utils.cli import original_message, os_error_message
from utils.errors import ConfigError, TrainingError, UserError
from utils.urls import redact_url

BEFORE = {"new": "new", "restart": "restarting in its folder (an earlier attempt stopped before its first checkpoint)",
          "interrupted": "interrupted, resuming", "finished": "finished, skipped"}
REASON_CHARACTERS = 200


class Outcome(NamedTuple):
    """One run of a sweep."""
    name: str  # exp_name
    before: str  # its state before the sweep came to it: a key of BEFORE
    status: str  # "trained", "skipped" (finished earlier) or "failed"
    folder: Optional[Path]  # its run folder; None when none was made
    reason: str = ""  # why it failed, on one line
    bad_input: bool = False  # failed on bad input (UserError, OSError) rather than in training


def parse_seeds(text: str) -> list:
    """'0,1,2' -> [0, 1, 2]; raises ConfigError for anything else (negative, empty, repeated)."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        seeds = None
    if not seeds or any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds '{text}' is not a comma-separated list of distinct whole numbers >= 0, "
                          f"e.g. --seeds 0,1,2.")
    return seeds


def seeded_config(name, seed, overrides=(), kind="real"):
    """The config `name` as a `kind` run (run_kinds.kind_config) with `overrides`, seed `seed`,
    exp_name suffixed with `_seed<seed>`."""
    cfg = kind_config(name, kind, overrides)
    cfg.seed, cfg.exp_name = seed, f"{cfg.exp_name}_seed{seed}"
    return cfg


def plan(config_names, seeds, overrides=(), kind="real") -> list:
    """The sweep's configs, in run order: every config with every seed (seeded_config). A bad
    name or override raises ConfigError here, before anything runs."""
    return [seeded_config(name, seed, overrides, kind) for name in config_names for seed in seeds]


def run_folder(cfg) -> Optional[Path]:
    """The folder a run of cfg.exp_name continues in: the newest with a last.pt, else the first
    of `<exp_name>`, `<exp_name>_1`, ... left before its first checkpoint, else None."""
    runs = runs_of(cfg.exp_dir, cfg.exp_name)
    if runs:
        return runs[-1]
    exp_dir = Path(cfg.exp_dir)
    numbered = [d for d in exp_dir.glob(f"{cfg.exp_name}_*") if d.name[len(cfg.exp_name) + 1:].isdigit()]
    candidates = [exp_dir / cfg.exp_name] + sorted(numbered, key=lambda d: int(d.name[len(cfg.exp_name) + 1:]))
    return next((d for d in candidates if d.is_dir() and abandoned(d)), None)


def run_state(cfg) -> str:
    """A key of BEFORE, from run_folder(cfg)."""
    folder = run_folder(cfg)
    if folder is None:
        return "new"
    if not (folder / "last.pt").is_file():
        return "restart"
    summary = folder / "summary.json"
    if summary.is_file() and json.loads(summary.read_text())["epochs_completed"] >= cfg.train.epochs:
        return "finished"
    return "interrupted"


def epochs_left(cfg) -> int:
    """Epochs the sweep still has to train for `cfg`: none when finished, the rest of an
    interrupted run, else all of cfg.train.epochs."""
    state = run_state(cfg)
    if state == "finished":
        return 0
    if state == "interrupted":
        return max(0, cfg.train.epochs - (epochs_completed(run_folder(cfg)) or 0))
    return cfg.train.epochs


def _message(error: Exception) -> str:
    """The error's message as the CLI prints it (utils/cli.py), passwords in URLs hidden."""
    text = os_error_message(error) if isinstance(error, OSError) else original_message(error)
    return redact_url(text)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= REASON_CHARACTERS else text[:REASON_CHARACTERS - 3] + "..."


def sweep(config_names, seeds, overrides=(), kind="real") -> list:
    """Run (or skip, or resume) every config with every seed, in that order; returns an Outcome
    per run, in run order. Every config is loaded first, so a bad name or override stops the
    sweep (ConfigError) before anything runs; a run that fails is reported on stderr and the
    sweep goes on; Ctrl-C (KeyboardInterrupt) stops it."""
    configs = plan(config_names, seeds, overrides, kind)
    outcomes = []
    for number, cfg in enumerate(configs, 1):
        before = run_state(cfg)
        print(f"[{number}/{len(configs)}] {cfg.exp_name}: {BEFORE[before]}", flush=True)
        if before == "finished":
            outcomes.append(Outcome(cfg.exp_name, before, "skipped", run_folder(cfg)))
            continue
        try:
            train_experiment(cfg, resume="auto" if before == "interrupted" else None)
        except (TrainingError, UserError, OSError) as error:
            message = _message(error)
            print(f"error: {cfg.exp_name} failed, the sweep goes on: {message}", file=sys.stderr, flush=True)
            outcomes.append(Outcome(cfg.exp_name, before, "failed", run_folder(cfg), _one_line(message),
                                    bad_input=not isinstance(error, TrainingError)))
        else:
            outcomes.append(Outcome(cfg.exp_name, before, "trained", run_folder(cfg)))
    return outcomes


def report(outcomes) -> str:
    """A line of counts, and for failures a table: run, status, run folder, reason (one line each)."""
    failed = [o for o in outcomes if o.status == "failed"]
    counts = (f"{len(outcomes)} runs: {sum(o.status == 'trained' for o in outcomes)} trained now, "
              f"{sum(o.status == 'skipped' for o in outcomes)} finished earlier, {len(failed)} failed")
    if not failed:
        return counts
    rows = [("run", "status", "run folder", "reason")] + [
        (o.name, o.status, str(o.folder) if o.folder else "-", o.reason) for o in failed]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3] for row in rows]
    return "\n".join([counts + ":"] + lines + [
        "Run the same command again to retry them, each in its own folder (resumed from its last.pt, else restarted "
        "there); a diverged run needs other settings (e.g. a lower train.lr), under another exp_name once it has a "
        "last.pt (a resume keeps the run's settings)."])


def exit_status(outcomes) -> int:
    """0 when no run failed; 2 when every failure was bad input (a config, data, checkpoint or
    path to fix); 1 when a training failed."""
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed:
        return 0
    return 2 if all(o.bad_input for o in failed) else 1
