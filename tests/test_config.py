"""Config loading, --set overrides and the experiment configs themselves."""
import json

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
