"""Default locations, relative to the repository root (the directory above `configs/`), and
on Kaggle the scratch folder for what must not become part of a saved version's output."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(REPO_ROOT, "data")
RUNS_DIR = os.path.join(REPO_ROOT, "runs")


def kaggle_scratch_dir(environ=os.environ, isdir=os.path.isdir):
    """On Kaggle (KAGGLE_KERNEL_RUN_TYPE set): /kaggle/temp, else /tmp, neither kept when a
    version is saved (/kaggle/working is); elsewhere None."""
    if not environ.get("KAGGLE_KERNEL_RUN_TYPE"):
        return None
    return "/kaggle/temp" if isdir("/kaggle/temp") else "/tmp"


# The decoded-image cache (GBs for the full pets set): on Kaggle in its scratch folder, so it
# never becomes part of a saved version's output; elsewhere None: <repo>/data/cache.
SCRATCH_DIR = kaggle_scratch_dir()
CACHE_DIR = os.path.join(SCRATCH_DIR, "cache") if SCRATCH_DIR else None
