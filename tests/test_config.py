"""Config loading, --set overrides and the experiment configs themselves."""
import json
import re

import pytest

from models.registry import build_model, count_trainable_parameters
from utils.config import apply_overrides, available_configs, load_config, to_plain
from utils.errors import ConfigError

MLP_PARAMETERS = {
    # 784*200+200 + 200*10+10
    "mlp": 159_010, "mlp_augment": 159_010, "mlp_gelu": 159_010, "mlp_xavier": 159_010, "mlp_adamw": 159_010,
    # 784*200+200 + 2*(200*200+200) + 200*10+10
    "mlp_deep": 239_410,
    # 784*2048+2048 + 2048*2048+2048 + 2048*10+10
    "mlp_best": 5_824_522,
    # 784*1024+1024 + 1024*10+10
    "mlp_wide": 814_090,
}


def test_overrides_parse_literals_and_keep_types():
    cfg = load_config("mlp", ["train.lr=0.2", "train.epochs=3", "train.batch_size=32", "data.root=/tmp/x",
                              "train.lr_scaling={'base_lr': 0.1, 'base_batch_size': 256}", "train.lr=1"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 3 and cfg.train.batch_size == 32
    assert cfg.data.root == "/tmp/x"
    assert cfg.train.lr_scaling.base_batch_size == 256


def test_override_reaches_keys_that_contain_dots_and_none_disables():
    cfg = load_config("mlp", ["data.md5.train-images-idx3-ubyte.gz=None"])
    assert cfg.data.md5["train-images-idx3-ubyte.gz"] is None
    assert cfg.data.md5["t10k-images-idx3-ubyte.gz"] == "5c965bf0a639b31b8f53240b1b52f4d7"
    assert load_config("mlp", ["data.md5=None"]).data.md5 is None


def test_unknown_key_suggests_close_match():
    with pytest.raises(ConfigError, match=r"Unknown config key 'train.lrr'.*train\.lr"):
        load_config("mlp", ["train.lrr=0.1"])


@pytest.mark.parametrize("override, expected", [
    ("train.epochs=2.5", "expects a value of type int"),
    ("train.no_bias_decay=1", "expects a value of type bool"),
    ("train.lr=fast", "expects a value of type float"),
    ("train.epochs", "not of the form KEY=VALUE"),
])
def test_bad_values_are_rejected(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config("mlp", [override])


def test_unknown_config_name_lists_close_ones():
    with pytest.raises(ConfigError, match="Did you mean: mlp_deep"):
        load_config("mlp_dep")


def test_variants_do_not_change_the_base_config():
    base, deep = load_config("mlp"), load_config("mlp_deep")
    assert len(base.model.layers) == 4 and len(deep.model.layers) == 8
    apply_overrides(base, ["train.lr=0.3"])
    assert load_config("mlp").train.lr == 0.05


def test_every_config_is_json_serialisable_and_named():
    names = available_configs()
    assert {"mlp", "mlp_augment", "mlp_deep", "mlp_wide", "mlp_gelu", "mlp_xavier", "mlp_adamw"} <= set(names)
    exp_names = [load_config(n).exp_name for n in names]
    assert len(set(exp_names)) == len(exp_names), "two configs would share a run directory name"
    for name in names:
        json.dumps(to_plain(load_config(name)))


@pytest.mark.parametrize("name, expected", sorted(MLP_PARAMETERS.items()))
def test_mlp_parameter_counts(name, expected):
    cfg = load_config(name)
    assert count_trainable_parameters(build_model(cfg.model_name, cfg.model, 10)) == expected


def test_mlp_output_width_must_match_classes():
    cfg = load_config("mlp")
    with pytest.raises(ConfigError, match="out_features=10.*37 classes"):
        build_model("MLP", cfg.model, 37)


def test_unknown_layer_and_init_names_are_config_errors():
    cfg = load_config("mlp", ["model.init_type.weight=('kaimin_uniform_', {})"])
    with pytest.raises(ConfigError, match="Did you mean: kaiming_uniform_"):
        build_model("MLP", cfg.model, 10)
    cfg.model.init_type.weight = ("kaiming_uniform_", {})
    cfg.model.layers[2] = ("Relu", {})
    with pytest.raises(ConfigError, match="Unknown layer 'Relu'.*ReLU"):
        build_model("MLP", cfg.model, 10)


@pytest.mark.parametrize("override, key, allowed", [
    ("train.epochs=0", "train.epochs=0", "whole number >= 1"),
    ("train.epochs=None", "train.epochs=None", "whole number >= 1"),
    ("train.batch_size=0", "train.batch_size=0", "whole number >= 1"),
    ("data.num_workers=-1", "data.num_workers=-1", "whole number >= 0"),
    ("seed=-1", "seed=-1", "whole number in [0, 4294967295]"),
    ("seed=1099511627776", "seed=1099511627776", "whole number in [0, 4294967295]"),
    ("train.lr=1e999", "train.lr=inf", "finite number > 0"),
    ("train.lr=0", "train.lr=0.0", "finite number > 0"),
    ("train.lr=-0.1", "train.lr=-0.1", "finite number > 0"),
    ("train.weight_decay=-1e-4", "train.weight_decay=-0.0001", "finite number >= 0"),
    ("train.label_smoothing=1.0", "train.label_smoothing=1.0", "[0, 1)"),
    ("train.label_smoothing=-0.1", "train.label_smoothing=-0.1", "[0, 1)"),
    ("train.warmup_epochs=-1", "train.warmup_epochs=-1.0", "finite number >= 0"),
    ("logger.flush_every=0", "logger.flush_every=0", "whole number >= 1"),
    ("train.amp='fp8'", "train.amp='fp8'", "one of auto, bf16, fp16, off"),
    ("train.amp='bf61'", "train.amp='bf61'", "Did you mean: bf16"),
    ("train.grad_clip_norm=0", "train.grad_clip_norm=0", "> 0, or None"),
    ("train.max_nonfinite_steps=0", "train.max_nonfinite_steps=0", ">= 1, or None"),
    ("train.scheduler='cosin'", "train.scheduler='cosin'", "Did you mean: cosine"),
    ("train.lr_scaling={'base_lr': 0.1}", "train.lr_scaling=", "base_batch_size"),
    ("train.lr_scaling={'base_lr': 0.1, 'base_batch_size': 0}", "train.lr_scaling=", "finite > 0"),
    ("train.overfit_batch_steps=0", "train.overfit_batch_steps=0", ">= 1"),
    ("threads=0", "threads=0", ">= 1, or None"),
    ("data.std=[0.0]", "data.std=[0.0]", "numbers > 0"),
    ("data.mean=[float('inf')]", "data.mean=", "list of finite numbers"),
    ("device='gpu'", "device='gpu'", "auto, cpu, cuda, cuda:N or mps"),
    ("exp_name='../elsewhere'", "exp_name='../elsewhere'", "names the run directory"),
    ("exp_name=''", "exp_name=''", "names the run directory"),
    ("data.loader='gpu'", "data.loader='gpu'", "one of auto, device, cached, workers"),
    ("data.val_fraction=1.0", "data.val_fraction=1.0", "[0, 1)"),
    ("train.optimizer='sgd'", "train.optimizer='sgd'", "Did you mean: SGD"),
    ("data.transforms.train=[('ToTensor',)]", "data.transforms.train=", "list of (name, {keyword arguments}) pairs"),
    ("model.layers=[('Flatten', {}), 'ReLU']", "model.layers=", "list of (name, {keyword arguments}) pairs"),
    ("model.init_type.weight=None", "model.init_type.weight=None", "a (name, {keyword arguments}) pair."),
    ("data.val_fraction=-0.2", "data.val_fraction=-0.2", "[0, 1)"),
    ("data.val_seed=-1", "data.val_seed=-1", "a whole number in [0, 4294967295], or None"),
    ("logger.backend='mlfow'", "logger.backend='mlfow'", "Did you mean: mlflow"),
    ("logger.neptune_mode='online'", "logger.neptune_mode='online'", "offline, debug, async, sync, or None"),
    ("model_name='ResNet18'", "model_name='ResNet18'", "MLP, VGG16, ResNet50"),
    ("data.name='MNIST'", "data.name='MNIST'", "Did you mean: KMNIST"),
])
def test_values_out_of_range_are_one_config_error_naming_key_and_range(override, key, allowed):
    with pytest.raises(ConfigError) as error:
        load_config("mlp", [override])
    message = str(error.value)
    assert key in message and allowed in message and "\n" not in message


@pytest.mark.parametrize("name, model, expected", [
    ("resnet50", {"layers": [3, 4, 6]}, "model.layers=[3, 4, 6] must be a list of 4 whole numbers >= 1"),
    ("resnet50", {"width": 0}, "model.width=0 must be a whole number >= 1"),
    ("vgg16", {"classifier_width": 0}, "model.classifier_width=0 must be a whole number >= 1"),
    ("mlp", {"layers": [3, 4, 6, 3]}, "list of (name, {keyword arguments}) pairs"),
])
def test_model_keys_are_checked_for_their_model(name, model, expected):
    from utils.validation import check_values
    cfg = load_config(name)
    cfg.model.update(model)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        check_values(cfg)
    cfg = load_config("resnet50")
    cfg.model.update(layers=[1, 1, 1, 1], width=8)  # what the notebook's smoke test uses
    check_values(cfg)


def test_every_bad_value_is_named_in_one_error_and_model_keys_are_checked():
    with pytest.raises(ConfigError) as error:
        load_config("vgg16", ["train.epochs=0", "train.batch_size=-3", "model.dropout=1.5"])
    message = str(error.value)
    assert message.startswith("Invalid config values:")
    assert all(key in message for key in ("train.epochs=0", "train.batch_size=-3", "model.dropout=1.5"))


def test_every_shipped_config_passes_the_checks_and_a_config_file_is_checked_too(tmp_path):
    for name in available_configs():
        load_config(name)
    custom = tmp_path / "custom.py"
    custom.write_text("from configs.mlp_cfg import cfg as base\nimport copy\n"
                      "cfg = copy.deepcopy(base)\ncfg.train.lr = float('nan')\n")
    with pytest.raises(ConfigError, match=r"train.lr=nan must be a finite number > 0"):
        load_config(str(custom))


def test_the_checks_offer_the_choices_the_library_accepts():
    """Choice lists are defined once in utils (which imports nothing of ours) and imported where used;
    the registries' names (datasets, models) are checked against the rules here."""
    from datasets.loading.loaders import DATASETS, LOADERS
    from executors.optim import SCHEDULES
    from logs.Logger import BACKENDS
    from logs.neptune_backend import MODES
    from models.registry import MODELS
    from utils.validation import RULES
    assert RULES["data.loader"].choices == LOADERS and RULES["train.scheduler"].choices == SCHEDULES
    assert RULES["logger.backend"].choices == BACKENDS and RULES["logger.neptune_mode"].choices == MODES
    assert set(RULES["model_name"].choices) == set(MODELS) and set(RULES["data.name"].choices) == set(DATASETS)
    import torch

    from utils.runtime import resolve_precision
    for amp in RULES["train.amp"].choices:
        resolve_precision(amp, torch.device("cpu"))


def test_a_warmup_as_long_as_the_run_is_warned_about():
    from utils.validation import warnings_for
    assert warnings_for(load_config("resnet50_tricks")) == []
    notes = warnings_for(load_config("resnet50_tricks", ["train.epochs=2"]))
    assert len(notes) == 1 and "train.warmup_epochs=5.0" in notes[0] and "train.epochs=2" in notes[0]


@pytest.mark.parametrize("unknown, meant", [
    ("lr", "train.lr"), ("learning_rate", "train.lr"), ("train.learning_rate", "train.lr"), ("model.lr", "train.lr"),
    ("train.lrr", "train.lr"), ("trian.lr", "train.lr"), ("epochs", "train.epochs"), ("num_epochs", "train.epochs"),
    ("train.wd", "train.weight_decay"), ("bs", "train.batch_size"), ("data.workers", "data.num_workers"),
    ("num_workers", "data.num_workers"), ("warmup", "train.warmup_epochs"), ("output_dir", "exp_dir"),
    ("train.label_smothing", "train.label_smoothing"), ("data.data_dir", "data.root"), ("fp16", "train.amp"),
    ("data.val_split", "data.val_fraction"), ("validation_split", "data.val_fraction"),
])
def test_unknown_keys_suggest_the_key_meant(unknown, meant):
    with pytest.raises(ConfigError) as error:
        load_config("resnet50_tricks", [f"{unknown}=1"])
    suggestions = str(error.value).split("Did you mean: ")[1].rstrip("?").split(", ")
    assert suggestions[0] == meant


def test_paths_are_made_absolute_so_the_saved_config_works_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = load_config("resnet50", ["data.root='pets'", "exp_dir='runs'", "data.cache_dir='~/cache'",
                                   "logger.tracking_uri='sqlite:///store/mlflow.db'"])
    assert cfg.data.root == str(tmp_path / "pets") and cfg.exp_dir == str(tmp_path / "runs")
    assert cfg.data.cache_dir == str(tmp_path / "home" / "cache")
    assert cfg.logger.tracking_uri == f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    absolute = load_config("resnet50", ["logger.tracking_uri='sqlite:////abs/mlflow.db'"])
    assert absolute.logger.tracking_uri == "sqlite:////abs/mlflow.db" and absolute.data.cache_dir is None


def test_resnet50_best_is_resnet50_tricks_with_only_the_tools_switched_on():
    def leaves(tree, prefix=""):
        values = {}
        for key, value in tree.items():
            values.update(leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return values
    best, tricks = leaves(to_plain(load_config("resnet50_best"))), leaves(to_plain(load_config("resnet50_tricks")))
    changed = {key: best[key] for key in best if best[key] != tricks[key]}
    assert best.keys() == tricks.keys()
    assert changed == {"exp_name": "resnet50_best", "train.ema_decay": 0.99, "train.ema_warmup": True,
                       "train.mixup_alpha": 0.2, "train.cutmix_alpha": 1.0, "eval.tta": "flip"}
