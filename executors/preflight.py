"""Pre-flight: build what the config describes, small, before any run folder exists.

utils/validation.py checks each value alone. Some values pass it and still cannot run: a
Normalize with 3 means for grey images, layers whose shapes do not chain, an init function
torch refuses, a crop larger than the images, an optimizer that needs a closure. Each
would stop the run with a traceback once its folder exists. `preflight(cfg)` finds them by
doing the work once on a tiny scale, without reading data or computing statistics:

* transforms: each split's list applied, transform by transform, to synthetic images of
  the dataset's mode and sizes (the class's `sample_sizes`: 28x28 for KMNIST; for Oxford
  pets its usual and smallest sizes), which must end in a float tensor [C, h, w] of one
  size; a Normalize must have one mean and std for all channels or one per channel;
* model: built from cfg.model on the CPU and run, in training mode without gradients, on a
  batch of 2 of each split's tensors, which must give logits [2, number of classes];
* optimizer and lr schedule: built on the model's parameters and stepped once, as the
  Trainer steps them (optimizer.step() without a closure), with a zero gradient on the
  smallest parameter alone (the others, without gradients, are skipped: the step is cheap);
* test-time augmentation: eval.tta must suit the dataset (executors/tta.resolve_tta: no
  flips of KMNIST characters).

Any exception of a step, and any UserWarning while something is built from the config
(torchvision warns about a RandomResizedCrop scale given as (max, min)), is a ConfigError
naming the key to fix. The global random states are restored: the run draws what it would
have drawn without the check. It takes about half a second for ResNet-50 at 224 px.
"""
import contextlib
import random
import warnings

import torch
from easydict import EasyDict
from PIL import Image
from torchvision import transforms as T

from datasets.loading.loaders import TRANSFORMS_OF, dataset_class
from datasets.transforms.building import build_transforms
from executors.optim import build_optimizer, build_scheduler
from executors.tools.tta import resolve_tta
from models.registry import build_model
from utils.errors import ConfigError, first_line

BATCH = 2  # BatchNorm in training mode needs more than one value per channel
MODE_WORDS = {"L": "grey", "RGB": "in colour (RGB)"}
DEVICE_ONLY_ARGUMENTS = ("capturable", "fused")  # optimizer arguments the training device judges, not the CPU


def preflight(cfg) -> None:
    """Raise ConfigError, naming the key, when cfg's transforms, model or optimizer cannot run
    (see the module docstring). Reads no data, writes nothing, leaves the random states as they were."""
    dataset = dataset_class(cfg.data.name)
    resolve_tta(cfg)
    with _random_states_kept():
        shapes = {split: output_shape(cfg.data, split, dataset) for split in ("train", "test")}
        model = checked_model(cfg, len(dataset.classes), shapes)
        check_optimizer(model, cfg.train)


@contextlib.contextmanager
def _random_states_kept():
    """Put torch's CPU generator and Python's `random` back as they were, also after an error."""
    python_state = random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(python_state)


@contextlib.contextmanager
def blamed_on(key: str, doing: str, warnings_too=False):
    """Turn an exception raised inside (with warnings_too, a UserWarning as well) into the
    ConfigError '<key>: <doing> fails: <error>. Fix <key>.'; a ConfigError passes unchanged."""
    with warnings.catch_warnings():
        if warnings_too:
            warnings.simplefilter("error", UserWarning)
        try:
            yield
        except ConfigError:
            raise
        except Exception as error:  # whatever torch or torchvision raise for values they refuse
            raise ConfigError(f"{key}: {doing} fails: {type(error).__name__}: {first_line(error)}. "
                              f"Fix {key}.") from None


def _statistics(data_cfg, channels: int):
    """(mean, std) that Normalize without arguments gets: data.mean/std, or placeholders of the
    length the training-set statistics will have when they are None (computed later)."""
    if data_cfg.mean is None or data_cfg.std is None:
        return [0.5] * channels, [0.25] * channels
    return data_cfg.mean, data_cfg.std


def _check_normalize(transform, kwargs, where, image, dataset) -> None:
    """ConfigError when a Normalize's mean or std has neither 1 value nor one per channel of `image`."""
    channels = image.shape[0] if isinstance(image, torch.Tensor) and image.dim() == 3 else None
    for name in ("mean", "std"):
        values = getattr(transform, name)
        count = len(values) if isinstance(values, (list, tuple)) else 1
        if channels is not None and count not in (1, channels):
            key = where if name in kwargs else f"data.{name}"
            raise ConfigError(
                f"{key}={list(values)} has {count} values, but the images reaching Normalize ({where}) have "
                f"{channels} channel{'s' if channels > 1 else ''} ({dataset.__name__} images are "
                f"{MODE_WORDS.get(dataset.image_mode, dataset.image_mode)}): give one value per channel"
                + (", or None to compute them from the training images." if key.startswith("data.") else "."))


def output_shape(data_cfg, split: str, dataset) -> tuple:
    """(C, h, w) that the transforms of `split` (data.transforms.train, or .test for "test")
    make of the dataset's images, tried on a synthetic image of each of its sample sizes;
    ConfigError naming data.transforms.<list>[i] (or data.mean/std) otherwise."""
    key = f"data.transforms.{TRANSFORMS_OF[split]}"
    mean, std = _statistics(data_cfg, _channels(dataset.image_mode))
    specs = list(data_cfg.transforms[TRANSFORMS_OF[split]])
    steps = []
    for index, (name, kwargs) in enumerate(specs):
        where = f"{key}[{index}]"
        with blamed_on(where, f"{name}({kwargs or {}})", warnings_too=True):
            steps.append((where, name, dict(kwargs or {}), build_transforms([(name, kwargs)], mean, std,
                                                                             key=key).transforms[0]))
    shapes = {}
    for width, height in dataset.sample_sizes:
        image = _synthetic_image(dataset.image_mode, (width, height))
        for index, (where, name, kwargs, transform) in enumerate(steps):
            if isinstance(transform, T.Normalize):
                _check_normalize(transform, kwargs, where, image, dataset)
            sizes_words = "are" if len(dataset.sample_sizes) == 1 else "come in sizes like"
            origin = (f"what the transforms before it make of a {width}x{height} {dataset.__name__} image" if index
                      else f"{dataset.__name__} images {sizes_words} {width}x{height}")
            with blamed_on(where, f"{name}({kwargs}) on a {_describe(image)} ({origin})", warnings_too=True):
                image = transform(image)
        if not (isinstance(image, torch.Tensor) and image.is_floating_point() and image.dim() == 3):
            raise ConfigError(f"{key} ends in {_describe(image)}, not a float tensor [C, H, W]: end it with "
                              f"ToTensor (then Normalize).")
        shapes[width, height] = tuple(image.shape)
    if len(set(shapes.values())) > 1:
        made = ", ".join(f"{list(shape)} from {w}x{h}" for (w, h), shape in shapes.items())
        raise ConfigError(f"{key} gives images of different sizes ({made}), which cannot form a batch: end it "
                          f"with a crop or resize to one (height, width), e.g. CenterCrop or Resize((224, 224)).")
    return next(iter(shapes.values()))


def _channels(mode: str) -> int:
    """Channels of a PIL image mode: 1 for "L", 3 for "RGB"."""
    return len(Image.new(mode, (1, 1)).getbands())


def _synthetic_image(mode: str, size) -> Image.Image:
    """A PIL image of `mode` and (width, height) `size` with random pixels."""
    channels = _channels(mode)
    pixels = torch.randint(0, 256, (size[1], size[0], channels), dtype=torch.uint8).numpy()
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


def _describe(image) -> str:
    """'500x375 image of mode RGB', 'torch.float32 tensor [3, 224, 224]', or the type's name."""
    if isinstance(image, Image.Image):
        return f"{image.width}x{image.height} image of mode {image.mode}"
    if isinstance(image, torch.Tensor):
        return f"{image.dtype} tensor {list(image.shape)}"
    return type(image).__name__


def checked_model(cfg, num_classes: int, shapes: dict):
    """The model of cfg, built on the CPU and run on a batch of BATCH images of each shape of
    `shapes` ({split: (C, h, w)}); ConfigError naming model (model.layers for the MLP) when it
    cannot be built, cannot take the batch or does not give [BATCH, num_classes] logits."""
    with blamed_on("model", f"building {cfg.model_name} from the model section", warnings_too=True):
        model = build_model(cfg.model_name, cfg.model, num_classes)
    key = "model.layers" if cfg.model_name == "MLP" else "model"
    model.train()
    tried = set()
    for split, shape in shapes.items():
        if shape in tried:
            continue
        tried.add(shape)
        batch = torch.randn(BATCH, *shape)
        doing = (f"{cfg.model_name} on a batch of {split} images {list(batch.shape)} "
                 f"(what data.transforms.{TRANSFORMS_OF[split]} makes of {cfg.data.name} images)")
        with blamed_on(key, doing), torch.no_grad():
            logits = model(batch)
        if tuple(logits.shape) != (BATCH, num_classes):
            raise ConfigError(f"{key}: {doing} gives outputs of shape {list(logits.shape)}, not the logits "
                              f"[{BATCH}, {num_classes}] of {num_classes} classes. Fix {key}.")
    return model


def check_optimizer(model, train_cfg) -> None:
    """Build the optimizer and lr schedule of `train_cfg` on `model` and step both once (a zero
    gradient on the smallest parameter); ConfigError naming train.optimizer (or the key
    build_optimizer names)."""
    arguments = {k: v for k, v in (train_cfg.optimizer_args or {}).items() if k not in DEVICE_ONLY_ARGUMENTS}
    train_cfg = EasyDict({**train_cfg, "optimizer_args": arguments})
    key = "train.optimizer"
    with blamed_on(key, f"{train_cfg.optimizer} with optimizer_args={arguments}"):
        optimizer = build_optimizer(model, train_cfg)
        scheduler = build_scheduler(optimizer, train_cfg, steps_per_epoch=1)
    smallest = min(model.parameters(), key=torch.Tensor.numel)
    smallest.grad = torch.zeros_like(smallest)  # the optimizer steps only parameters with gradients: cheap
    with blamed_on(key, f"a training step of {train_cfg.optimizer} (the Trainer calls optimizer.step() without "
                        f"a closure)"):
        optimizer.step()
        scheduler.step()
