"""Find a dataset's two folders below a root, however a copy nests them: the folder of image
files and the folder of split lists (for Oxford-IIIT Pet: `images/*.jpg` and
`annotations/{trainval,test}.txt`, which Kaggle copies often put at `images/images/` and
`annotations/annotations/`, under extra top folders).

The search walks at most `depth` levels below the root (the root is level 0), skips hidden
folders and does not descend into a folder of images. When several pairs are found, the one
with the most images wins (a full copy over a sample, e.g. a smoke test's synthetic set in an
attached notebook output), then the two folders closest to each other (fewest steps to their
common parent: never the images of one copy with the lists of another), then the shallower
pair, then folders named like the official ones, then name order.
"""
import os
from pathlib import Path
from typing import NamedTuple, Optional

SEEN_SHOWN = 12  # folders listed in a "not found" message


class Layout(NamedTuple):
    """Where a dataset's files are."""
    images: Path  # the folder holding the image files
    lists: Path  # the folder holding the split lists


class Folder(NamedTuple):
    """What one visited folder holds."""
    path: Path
    images: int  # image files directly in it
    lists: tuple  # the split-list names directly in it


def survey(root: Path, depth: int, image_suffix: str, list_names: tuple) -> list:
    """[Folder] of `root` and the folders at most `depth` levels below it, shallow first."""
    found, level = [], [Path(root)]
    for remaining in range(depth, -1, -1):
        next_level = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
            except OSError:
                continue
            files = [e.name for e in entries if not e.name.startswith(".") and e.is_file()]
            images = sum(name.lower().endswith(image_suffix) for name in files)
            found.append(Folder(folder, images, tuple(name for name in list_names if name in files)))
            if remaining and not images:
                next_level += [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir()]
        level = next_level
    return found


def _steps(a: Path, b: Path) -> int:
    """Steps from `a` and from `b` up to their common parent, together."""
    common = Path(os.path.commonpath([a, b]))
    return len(a.relative_to(common).parts) + len(b.relative_to(common).parts)


def pair(folders: list, list_names: tuple, images_name: str, lists_name: str) -> Optional[Layout]:
    """The best (images folder, lists folder) of `folders` (see the module docstring), or None."""
    image_counts = {f.path: f.images for f in folders if f.images}
    list_folders = [f.path for f in folders if set(f.lists) == set(list_names)]
    pairs = [(images, lists) for images in image_counts for lists in list_folders]
    if not pairs:
        return None
    best = min(pairs, key=lambda p: (-image_counts[p[0]], _steps(*p), len(p[0].parts) + len(p[1].parts),
                                     (p[0].name != images_name) + (p[1].name != lists_name), str(p)))
    return Layout(*best)


def describe(root: Path, folders: list, image_suffix: str) -> str:
    """What the search saw, for a "not found" message: up to SEEN_SHOWN folders and their content."""
    root = Path(root)
    if not folders:
        return f"{root} does not exist or cannot be read"
    lines = []
    for folder in folders[:SEEN_SHOWN]:
        held = ([f"{folder.images} {image_suffix} files"] if folder.images else []) + list(folder.lists)
        name = "." if folder.path == root else str(folder.path.relative_to(root))
        lines.append(f"{name}/" + (f" ({', '.join(held)})" if held else ""))
    more = len(folders) - SEEN_SHOWN
    return "; ".join(lines) + (f"; and {more} more folders" if more > 0 else "")


def find_layout(root, depth: int, image_suffix: str, list_names: tuple, images_name: str, lists_name: str):
    """(Layout or None, description of what was seen when None) for the folders below `root`."""
    folders = survey(Path(root), depth, image_suffix, list_names)
    layout = pair(folders, list_names, images_name, lists_name)
    return layout, ("" if layout else describe(root, folders, image_suffix))
