"""Repeated runs: every config with every seed, one run directory each, surviving interruption.

A run is named `<exp_name>_seed<k>` and trains with seed k. Before each run the sweep looks
at that name's newest run directory with a last.pt: a summary.json that covers the planned
epochs means finished (skipped), a last.pt without it means interrupted (resumed with
`--resume auto` semantics), nothing means new. So a sweep stopped by a session limit is
started again with the same command and continues where it stopped.
"""
import json

from executors.launch import train_experiment
from executors.run_dir import runs_of
from utils.config import load_config
from utils.errors import ConfigError


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


def seeded_config(name, seed, overrides=()):
    """The config `name` with `overrides`, seed `seed`, exp_name suffixed with `_seed<seed>`."""
    cfg = load_config(name, overrides)
    cfg.seed, cfg.exp_name = seed, f"{cfg.exp_name}_seed{seed}"
    return cfg


def run_state(cfg) -> str:
    """"finished", "interrupted" or "new", from the newest run directory of cfg.exp_name."""
    runs = runs_of(cfg.exp_dir, cfg.exp_name)
    if not runs:
        return "new"
    summary = runs[-1] / "summary.json"
    if summary.is_file() and json.loads(summary.read_text())["epochs_completed"] >= cfg.train.epochs:
        return "finished"
    return "interrupted"


def sweep(config_names, seeds, overrides=()) -> list:
    """Run (or skip, or resume) every config with every seed, in that order; returns
    [(exp_name, state before the run)] in run order."""
    plan = [seeded_config(name, seed, overrides) for name in config_names for seed in seeds]
    done = []
    for number, cfg in enumerate(plan, 1):
        state = run_state(cfg)
        print(f"[{number}/{len(plan)}] {cfg.exp_name}: {state}"
              f"{', skipped' if state == 'finished' else ', resuming' if state == 'interrupted' else ''}", flush=True)
        if state != "finished":
            train_experiment(cfg, resume="auto" if state == "interrupted" else None)
        done.append((cfg.exp_name, state))
    return done
