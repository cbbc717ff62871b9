"""Oxford-IIIT Pet: 7,349 RGB photos of 37 cat and dog breeds (3,680 trainval / 3,669 test).

`data.root` holds `images/` and `annotations/` (the official archives extracted, or a
Kaggle copy, also read-only and nested: `images/images/`, `annotations/annotations/`, extra
top folders; see locate). When they are missing, `images.tar.gz` and
`annotations.tar.gz` are downloaded from the mirrors, md5-checked and safely extracted.
Split lists are `annotations/trainval.txt` and `annotations/test.txt`, lines of
`Image CLASS-ID SPECIES BREED-ID` (ids from 1; species 1 = cat, 2 = dog; BREED-ID counts
within the species). Labels are CLASS-ID - 1 and the classes are always the official 37
breeds, whichever of them the lists hold; a line that disagrees with the official table (an
id outside 1-37, an image named after another breed, the wrong species or breed id) is a
data error naming the file and line.
"""
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from datasets.files import folder_layout
from datasets.files.download import ensure_files, extract_archive_safely
from datasets.files.folder_layout import Layout
from datasets.files.image_files import PREDICTION_ADVICE, read_image
from utils.errors import DataError

SPLIT_FILES = {"train": "trainval.txt", "test": "test.txt"}
ARCHIVES = {"images.tar.gz": "images", "annotations.tar.gz": "annotations"}
SPECIES = {1: "cat", 2: "dog"}
SEARCH_DEPTH = 4  # folder levels below data.root searched for images/ and annotations/
STATISTICS_SIZE = 256  # pixel statistics are taken on images whose shorter side is resized to this
CLASSES = ("Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "Bengal",
           "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau", "english_cocker_spaniel",
           "english_setter", "german_shorthaired", "great_pyrenees", "havanese", "japanese_chin", "keeshond",
           "leonberger", "Maine_Coon", "miniature_pinscher", "newfoundland", "Persian", "pomeranian", "pug",
           "Ragdoll", "Russian_Blue", "saint_bernard", "samoyed", "scottish_terrier", "shiba_inu", "Siamese",
           "Sphynx", "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier")  # CLASS-ID - 1 order
CAT_BREEDS = frozenset(name for name in CLASSES if name[0].isupper())  # the release capitalises cat breeds


def official_row(class_id: int):
    """(breed name, species id, breed id) of an official CLASS-ID in 1-37."""
    name = CLASSES[class_id - 1]
    species = 1 if name in CAT_BREEDS else 2
    same_species = [n for n in CLASSES[:class_id] if (n in CAT_BREEDS) == (species == 1)]
    return name, species, len(same_species)


def locate(folder, depth: int = SEARCH_DEPTH):
    """(Layout(images, lists) or None, what was seen when None): the folder of .jpg images and
    the folder holding both split lists at most `depth` levels below `folder`, in any nesting
    (datasets/files/folder_layout.py)."""
    return folder_layout.find_layout(folder, depth, ".jpg", tuple(SPLIT_FILES.values()), "images", "annotations")


def find_layout(folder, depth: int = SEARCH_DEPTH):
    """The Layout(images, lists) below `folder` (see locate), or None."""
    return locate(folder, depth)[0]


def not_found(folder, depth: int, seen: str) -> str:
    """What was looked for below `folder` and what was seen there (one paragraph)."""
    return (f"No Oxford-IIIT Pet found under {folder}: looked up to {depth} levels down for a folder of .jpg "
            f"images (images/) and a folder holding {' and '.join(SPLIT_FILES.values())} (annotations/), in any "
            f"nesting (e.g. images/images/, annotations/annotations/); saw: {seen}.")


def check_archive(name: str, path: Path) -> None:
    """ValueError unless the tar archive `path` (stored as `name`) starts with the folder
    ARCHIVES[name] (images/ or annotations/): how a download with data.md5=None is checked."""
    with tarfile.open(path, "r|*") as tar:
        first = next(iter(tar), None)
    if first is None or Path(first.name).parts[:1] != (ARCHIVES[name],):
        raise ValueError(f"not the release's {name}: it does not start with the folder {ARCHIVES[name]}/")


def prepare_root(cfg) -> Layout:
    """The Layout(images, lists) of the dataset under cfg.root, downloading and extracting the
    archives there when no layout is found (see locate; an existing one is used as is, also
    read-only). DataError saying what was looked for and seen when that is impossible."""
    root = Path(cfg.root)
    layout, seen = locate(root)
    if layout is not None:
        return layout
    md5 = cfg.md5 or {}
    try:
        ensure_files(root, {name: md5.get(name) for name in ARCHIVES}, cfg.mirrors, cfg.download, "Oxford-IIIT Pet",
                     layout_hint=" (or the folders images/ and annotations/ extracted from them)",
                     validate=check_archive)
    except DataError as error:
        raise DataError(f"{not_found(root, SEARCH_DEPTH, seen)} {error}") from None
    for archive, folder in ARCHIVES.items():
        if not (root / folder).exists():
            print(f"Extracting {root / archive}")
            extract_archive_safely(root / archive, root)
    layout, seen = locate(root)
    if layout is None:
        raise DataError(f"{not_found(root, SEARCH_DEPTH, seen)} The archives in {root} are not the Oxford-IIIT Pet "
                        f"release: delete them and download again.")
    return layout


def read_split(path: Path):
    """[(image name, class id, species id)] of a split list, each line checked against the
    official table and listed once; DataError naming the file and line otherwise."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark, as some editors write, is not part of a name
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"Cannot read the split list {path} ({error}): restore it from annotations.tar.gz.") \
            from None
    rows, first_line = [], {}
    for number, line in enumerate(text.splitlines(), 1):  # \n, \r\n or \r line ends
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        try:
            if len(fields) != 4:
                raise ValueError
            image, (class_id, species, breed_id) = fields[0], map(int, fields[1:])
        except ValueError:
            raise DataError(f"{path}, line {number}: expected 'Image CLASS-ID SPECIES BREED-ID', got {line!r}.") \
                from None
        check_row(image, class_id, species, breed_id, f"{path}, line {number}")
        if image in first_line:
            raise DataError(f"{path}, line {number}: {image} is listed again (first on line {first_line[image]}); "
                            f"remove the duplicate line.")
        first_line[image] = number
        rows.append((image, class_id, species))
    return rows


def check_row(image: str, class_id: int, species: int, breed_id: int, where: str) -> None:
    """DataError unless the fields agree with the official table (see the module docstring)."""
    if not 1 <= class_id <= len(CLASSES):
        raise DataError(f"{where}: CLASS-ID {class_id} of {image} is outside 1-{len(CLASSES)}: the Oxford-IIIT "
                        f"Pet release has {len(CLASSES)} breeds; fix or remove the line.")
    name, official_species, official_breed_id = official_row(class_id)
    problems = []
    if image.rpartition("_")[0] != name:
        problems.append(f"the image is named {image!r}, but CLASS-ID {class_id} is {name} "
                        f"(its images are named {name}_NUMBER)")
    if species != official_species:
        problems.append(f"SPECIES is {species}, but {name} is a {SPECIES[official_species]} "
                        f"({official_species})")
    if breed_id != official_breed_id:
        problems.append(f"BREED-ID is {breed_id}, but {name} is breed {official_breed_id} of its species")
    if problems:
        raise DataError(f"{where}: {'; '.join(problems)}. The lists must follow the official annotations "
                        f"(CLASS-ID 1-37 in the order {CLASSES[0]}, {CLASSES[1]}, ..., {CLASSES[-1]}); "
                        f"fix the line or restore the file from annotations.tar.gz.")


def check_disjoint(lists: dict, folder: Path) -> None:
    """DataError when an image is in both split lists (the test score would include training images)."""
    both = sorted({row[0] for row in lists["train"]} & {row[0] for row in lists["test"]})
    if both:
        shown = ", ".join(both[:10]) + (", ..." if len(both) > 10 else "")
        raise DataError(f"{len(both)} images are listed in both {folder / SPLIT_FILES['train']} and "
                        f"{folder / SPLIT_FILES['test']}: {shown}. Each image belongs to one split; restore the "
                        f"lists from annotations.tar.gz.")


def decode_rgb(path: Path) -> Image.Image:
    """Decode by content (the release has a GIF and a PNG with alpha under .jpg names) to RGB."""
    image, _ = read_image(path, advice="Replace it with the file from the official release, or remove its line "
                                       "from the annotation lists.")
    return image.convert("RGB")


class OxfordIIITPet(Dataset):
    """One split of Oxford-IIIT Pet.

    Args:
        cfg: the `data` config section (root, download, mirrors, md5).
        split: "train" (trainval.txt) or "test" (test.txt).
        transforms: callable applied to each RGB PIL image, or None.

    Items: {"image": transforms(PIL RGB image), "label": int, "category": "cat" | "dog"}.
    Labels are CLASS-ID - 1 and `classes` the official 37 breed names, whichever of them the
    split lists hold (a model for this dataset always has 37 outputs).
    """

    image_mode = "RGB"
    classes = list(CLASSES)
    # (width, height) of images the release holds, for checks that read none (executors/preflight.py):
    # its usual landscape and portrait sizes, and a small one (the smallest of a 940-image sample)
    sample_sizes = ((500, 375), (375, 500), (150, 116))

    def __init__(self, cfg, split, transforms=None):
        if split not in SPLIT_FILES:
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        self.split, self.transforms = split, transforms
        self.layout = prepare_root(cfg)
        lists = {name: read_split(self.layout.lists / file) for name, file in SPLIT_FILES.items()}
        check_disjoint(lists, self.layout.lists)
        if not lists[split]:
            raise DataError(f"{self.layout.lists / SPLIT_FILES[split]} lists no images (only blank or "
                            f"comment lines): the {split} split would be empty. Restore it from annotations.tar.gz.")
        self.samples = [(self.layout.images / f"{image}.jpg", class_id - 1, SPECIES[species])
                        for image, class_id, species in lists[split]]
        missing = [path.name for path, _, _ in self.samples if not path.is_file()]
        if missing:
            shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
            raise DataError(f"{len(missing)} of the {len(self.samples)} {split} images listed in "
                            f"{self.layout.lists / SPLIT_FILES[split]} are missing from "
                            f"{self.layout.images}: {shown}. Restore them from images.tar.gz.")

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label, category = self.samples[index]
        image = decode_rgb(path)
        return {"image": self.transforms(image) if self.transforms else image, "label": label, "category": category}

    @property
    def labels(self) -> torch.Tensor:
        """int64 [N] labels of the split, in item order."""
        return torch.tensor([label for _, label, _ in self.samples], dtype=torch.long)

    def class_counts(self) -> list:
        """Number of images of each class, in class order."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def pixel_statistics(self):
        """(mean [3], std [3]) per RGB channel of the images scaled to [0, 1], each image first
        resized so its shorter side is 256 px (as the test pipeline's Resize(256) sees it)."""
        total, sums, squares = 0, np.zeros(3), np.zeros(3)
        for path, _, _ in self.samples:
            image = decode_rgb(path)
            scale = STATISTICS_SIZE / min(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3) / 255.0
            total, sums, squares = total + len(pixels), sums + pixels.sum(0), squares + (pixels ** 2).sum(0)
        mean = sums / total
        return mean.tolist(), np.sqrt(squares / total - mean ** 2).tolist()

    def show_statistic(self) -> dict:
        """Print and return the split's size, images per class and species, and pixel mean/std."""
        counts = dict(zip(self.classes, self.class_counts()))
        species = {name: sum(1 for _, _, c in self.samples if c == name) for name in ("cat", "dog")}
        mean, std = self.pixel_statistics()
        print(f"Oxford-IIIT Pet {self.split}: {len(self)} images, {len(self.classes)} classes, "
              f"{species['cat']} cats, {species['dog']} dogs")
        for name, count in counts.items():
            print(f"  {name:>28}: {count}")
        print(f"  pixel mean {[round(m, 4) for m in mean]}, std {[round(s, 4) for s in std]} "
              f"(RGB scaled to [0, 1], shorter side {STATISTICS_SIZE} px)")
        return {"split": self.split, "size": len(self), "class_counts": counts, "species": species,
                "mean": mean, "std": std}

    @classmethod
    def decode_training_image(cls, path: Path) -> Image.Image:
        """An image file decoded by content and converted to RGB (the training decode)."""
        return decode_rgb(Path(path))

    @classmethod
    def image_for_prediction(cls, path: Path):
        """(RGB PIL image, [notes]) of any image file (datasets/files/image_files.py: any mode, any size)."""
        image, notes = read_image(path, for_prediction=True, advice=PREDICTION_ADVICE)
        return image.convert("RGB"), notes
