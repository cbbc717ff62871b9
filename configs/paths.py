"""Default locations, relative to the repository root (the directory above `configs/`)."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(REPO_ROOT, "data")
RUNS_DIR = os.path.join(REPO_ROOT, "runs")
