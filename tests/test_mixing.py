"""Mixup and CutMix per sample (executors/tools/mixing.py) against torchvision's v2 transforms, the
soft-target loss with label smoothing, the dominant-label accuracy, the generator's determinism,
the config checks, and mixing in the Trainer: the step by hand, on against off, exact resume."""
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import v2

from executors.checkpoints.checkpoint import load_checkpoint
from executors.checkpoints.resume import config_changes
from executors.tools.mixing import MixParams, apply_mix, draw_params, make_mixer, mix_generator, soft_cross_entropy
from tests.trainer_runs import assert_same_run, make_trainer, straight_and_resumed
from utils.config import load_config, to_plain
from utils.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CLASSES = 5


def batch(size=6, height=8, width=12, seed=0):
    """(images float32 [size, 3, height, width], labels int64 [size]); non-square, so rows and columns differ."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(size, 3, height, width, generator=generator),
            torch.randint(CLASSES, (size,), generator=generator))


def v2_mixed(kind, images, labels, lam, centre=(0, 0)):
    """torchvision v2 MixUp or CutMix of a batch with its lambda forced to `lam` and, for
    CutMix, its box centre to `centre` (row, column): its own torch.randint draws are replayed."""
    transform = (v2.MixUp if kind == "mixup" else v2.CutMix)(alpha=1.0, num_classes=CLASSES)
    transform._dist = SimpleNamespace(sample=lambda shape: torch.tensor(lam))
    real_randint = torch.randint
    draws = iter([torch.tensor([centre[1]]), torch.tensor([centre[0]])])  # v2 draws the column first
    torch.randint = lambda *args, **kwargs: next(draws)
    try:
        return transform(images, labels)
    finally:
        torch.randint = real_randint


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_each_sample_is_mixed_as_torchvision_v2_mixes_it_with_its_own_draws(kind):
    """Sample i of the per-sample batch equals v2 on the two-image batch (partner, i) with
    lambda_i and box centre_i: v2's roll(1) then pairs i with its partner."""
    images, labels = batch()
    alphas = (1.0, 0.0) if kind == "mixup" else (0.0, 1.0)
    for seed in range(15):
        params = draw_params(6, 8, 12, torch.Generator().manual_seed(seed), *alphas)
        mixed = apply_mix(images, labels, CLASSES, params)
        for i, j in enumerate(params.partner.tolist()):
            pair = [j, i]
            v2_images, v2_targets = v2_mixed(kind, images[pair], labels[pair], params.lam[i].item(),
                                             params.centre[i].tolist())
            assert torch.equal(mixed.images[i], v2_images[1]), (seed, i)
            # v2 takes the cutmix share in float64, this module in float32: equal to rounding
            torch.testing.assert_close(mixed.targets[i], v2_targets[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_one_lambda_and_the_roll_pairing_give_v2s_whole_batch(kind):
    images, labels = batch()
    for lam, centre in [(0.3125, (0, 0)), (0.75, (7, 11)), (0.0625, (3, 5)), (1.0, (4, 4))]:
        params = MixParams(torch.full((6,), lam), torch.arange(6).roll(1), torch.full((6,), kind == "cutmix"),
                           torch.tensor([centre] * 6))
        mixed = apply_mix(images, labels, CLASSES, params)
        v2_images, v2_targets = v2_mixed(kind, images, labels, lam, centre)
        assert torch.equal(mixed.images, v2_images) and torch.equal(mixed.targets, v2_targets), (lam, centre)


def test_draws_are_per_sample_and_partners_a_shuffled_cycle():
    params = draw_params(64, 8, 8, torch.Generator().manual_seed(0), 1.0, 1.0)
    assert params.lam.unique().numel() == 64 and 10 < params.cutmix.sum() < 54
    assert sorted(params.partner.tolist()) == list(range(64))  # every image is a partner once
    assert not (params.partner == torch.arange(64)).any()  # and never its own
    assert params.centre[:, 0].unique().numel() > 1 and params.centre[:, 1].unique().numel() > 1


def test_lambdas_follow_beta_and_the_probabilities_are_honoured():
    generator = torch.Generator().manual_seed(1)
    lam = draw_params(20000, 8, 8, generator, mixup_alpha=0.4).lam
    beta = torch.distributions.Beta(0.4, 0.4)
    assert abs(lam.mean() - beta.mean) < 0.01 and abs(lam.var() - beta.variance) < 0.01
    cutmix = draw_params(20000, 8, 8, generator, 1.0, 1.0, switch_prob=0.2).cutmix.float().mean()
    assert abs(cutmix - 0.2) < 0.015
    unmixed = [bool((draw_params(4, 8, 8, generator, 1.0, mix_prob=0.3).lam == 1).all()) for _ in range(2000)]
    assert abs(sum(unmixed) / 2000 - 0.7) < 0.04


def test_an_unmixed_batch_is_returned_unchanged_with_one_hot_targets():
    images, labels = batch()
    params = draw_params(6, 8, 12, torch.Generator().manual_seed(0), 1.0, 1.0, mix_prob=0.0)
    mixed = apply_mix(images, labels, CLASSES, params)
    assert torch.equal(mixed.images, images) and torch.equal(mixed.targets, F.one_hot(labels, CLASSES).float())
    assert torch.equal(mixed.dominant, labels)


def test_soft_cross_entropy_equals_pytorchs_with_label_smoothing_on_one_hot_targets():
    logits, labels = torch.randn(8, CLASSES, generator=torch.Generator().manual_seed(0)), torch.arange(8) % CLASSES
    for eps in (0.0, 0.1, 0.3):
        expected = nn.CrossEntropyLoss(label_smoothing=eps)(logits, labels)
        torch.testing.assert_close(soft_cross_entropy(logits, F.one_hot(labels, CLASSES).float(), eps), expected)
        torch.testing.assert_close(soft_cross_entropy(logits, labels, eps), expected)  # labels taken as one-hot


def test_smoothing_a_mixed_target_is_the_mixture_of_the_smoothed_losses():
    images, labels = batch(8)
    params = draw_params(8, 8, 12, torch.Generator().manual_seed(3), 1.0, 1.0)
    mixed = apply_mix(images, labels, CLASSES, params)
    logits = torch.randn(8, CLASSES, generator=torch.Generator().manual_seed(4))
    own = mixed.targets[torch.arange(8), labels]  # the own label's weight (1 where the partner's label is the same)
    per_sample = nn.CrossEntropyLoss(reduction="none", label_smoothing=0.1)
    expected = own * per_sample(logits, labels) + (1 - own) * per_sample(logits, labels[params.partner])
    torch.testing.assert_close(soft_cross_entropy(logits, mixed.targets, 0.1), expected.mean())
    torch.testing.assert_close(soft_cross_entropy(logits, mixed.targets, 0.1),
                               nn.CrossEntropyLoss(label_smoothing=0.1)(logits, mixed.targets))


def test_the_dominant_label_is_the_one_of_larger_weight_after_the_box_is_clipped():
    images = torch.zeros(4, 1, 8, 8)
    labels = torch.tensor([0, 1, 2, 3])
    params = MixParams(lam=torch.tensor([0.7, 0.3, 0.5, 0.1]), partner=torch.tensor([1, 2, 3, 0]),
                       cutmix=torch.tensor([False, False, False, True]),
                       centre=torch.tensor([[4, 4], [4, 4], [4, 4], [0, 0]]))
    mixed = apply_mix(images, labels, CLASSES, params)
    # sample 3: lam 0.1 asks for a 6x6 box, clipped at the corner to 3x3: 55/64 of it stays its own
    assert mixed.targets[3, 3].item() == 1 - 9 / 64
    assert mixed.dominant.tolist() == [0, 2, 2, 3]  # own, partner's, own on a tie, own after clipping
    predictions = torch.tensor([0, 2, 3, 0])
    assert (predictions == mixed.dominant).float().mean().item() == 0.5


def test_the_same_generator_state_gives_the_same_batches_and_resume_continues_them():
    images, labels = batch()
    cfg = load_config("resnet50", ["train.mixup_alpha=0.2", "train.cutmix_alpha=1.0"]).train
    mixer = make_mixer(cfg, CLASSES, mix_generator(7, "cpu"))
    global_state = torch.get_rng_state()
    first = mixer(images, labels)
    saved = mixer.generator.get_state()
    rest = [mixer(images, labels) for _ in range(3)]
    assert torch.equal(torch.get_rng_state(), global_state)  # the run's global stream is untouched
    resumed = make_mixer(cfg, CLASSES, torch.Generator())
    resumed.generator.set_state(saved)
    again = make_mixer(cfg, CLASSES, mix_generator(7, "cpu"))(images, labels)
    for a, b in zip([first, *rest], [again, *(resumed(images, labels) for _ in range(3))]):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(rest[0].images, rest[1].images)


def test_the_mixing_generator_is_seeded_from_the_run_seed_apart_from_the_global_stream():
    draws = [torch.rand(4, generator=mix_generator(seed, "cpu", rank)) for seed, rank in [(0, 0), (0, 1), (1, 0)]]
    assert torch.equal(draws[0], torch.rand(4, generator=mix_generator(0, "cpu")))
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    torch.manual_seed(0)
    assert not torch.equal(draws[0], torch.rand(4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_float_and_channels_last_batches_keep_their_dtype_and_layout(dtype):
    images, labels = batch()
    images = images.to(dtype)
    params = draw_params(6, 8, 12, torch.Generator().manual_seed(2), 1.0, 1.0)
    plain = apply_mix(images, labels, CLASSES, params)
    nhwc = apply_mix(images.contiguous(memory_format=torch.channels_last), labels, CLASSES, params)
    assert plain.images.dtype == dtype and nhwc.images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain.images, nhwc.images) and torch.equal(plain.targets, nhwc.targets)


def test_mixing_is_off_by_default_and_for_configs_saved_before_it_existed():
    for name in ("mlp", "resnet50_tricks"):
        assert make_mixer(load_config(name).train, 10, torch.Generator()) is None
    saved = to_plain(load_config("mlp"))
    for key in ("mixup_alpha", "cutmix_alpha", "mix_prob", "mix_switch_prob"):
        del saved["train"][key]
    del saved["eval"]
    assert make_mixer(load_config("mlp").train, 10, torch.Generator()) is None
    assert config_changes(saved, to_plain(load_config("mlp"))) == []  # an older run still resumes
    changed = to_plain(load_config("mlp", ["train.mixup_alpha=0.2", "eval.tta='flip'"]))
    assert [key for key, _, _ in config_changes(saved, changed)] == ["train.mixup_alpha"]


@pytest.mark.parametrize("setting, named", [
    ("train.mixup_alpha=-0.2", "train.mixup_alpha=-0.2 must be a finite number >= 0"),
    ("train.cutmix_alpha=-1", "train.cutmix_alpha=-1.0 must be a finite number >= 0"),
    ("train.mix_prob=1.5", "train.mix_prob=1.5 must be a finite number in [0, 1], or None"),
    ("train.mix_switch_prob=-0.1", "train.mix_switch_prob=-0.1 must be a finite number in [0, 1], or None"),
])
def test_a_negative_alpha_or_a_probability_out_of_range_is_a_config_error(setting, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_config("mlp", [setting])


def test_the_cli_exits_2_on_a_negative_alpha():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), "--cfg", "mlp", "--set",
                             "train.cutmix_alpha=-1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train.cutmix_alpha=-1.0 must be a finite number >= 0" in result.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_mixing_on_the_gpu_reads_nothing_back_to_the_host():
    images, labels = (tensor.cuda() for tensor in batch())
    cfg = load_config("resnet50", ["train.mixup_alpha=0.2", "train.cutmix_alpha=1.0", "train.mix_prob=0.8"]).train
    mixer = make_mixer(cfg, CLASSES, mix_generator(0, "cuda"))
    logits = torch.randn(6, CLASSES, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        mixed = mixer(images.contiguous(memory_format=torch.channels_last), labels)
        soft_cross_entropy(logits, mixed.targets, 0.1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert mixed.images.is_cuda and torch.allclose(mixed.targets.sum(dim=1).cpu(), torch.ones(6))


def mlp_cfg(tmp_path, *overrides):
    return load_config("mlp", ["device='cpu'", "logger.backend='none'", f"exp_dir='{tmp_path}'", "train.epochs=2",
                               "train.batch_size=32", *overrides])


MIXING = ("train.mixup_alpha=0.4", "train.cutmix_alpha=1.0", "train.label_smoothing=0.1")


def test_a_trainer_mixes_each_batch_before_the_forward_and_scores_the_dominant_label(tmp_path):
    """One step by hand: the images reaching the forward pass are the batch mixed by a generator
    seeded from the run seed, the loss is the smoothed soft cross-entropy of the mixed targets,
    and the step accuracy is the share of predictions equal to the dominant label."""
    trainer = make_trainer(mlp_cfg(tmp_path, "train.mixup_alpha=1.0", "train.label_smoothing=0.1"))
    batch = next(iter(trainer.train_loader))
    expected = make_mixer(trainer.cfg.train, 10, mix_generator(trainer.cfg.seed, "cpu"))(batch["image"], batch["label"])
    seen, step_forward = [], trainer._forward_backward

    def recorded_step(images, targets):
        seen.append((images, targets, *step_forward(images, targets)))
        return seen[-1][2:]
    trainer._forward_backward = recorded_step
    step = trainer.make_step(batch)
    images, targets, loss, logits, _ = seen[0]
    assert torch.equal(images, expected.images) and torch.equal(targets, expected.targets)
    assert not torch.equal(images, batch["image"])
    assert loss.item() == pytest.approx(soft_cross_entropy(logits, targets, 0.1).item(), rel=1e-6)
    dominant = targets.argmax(dim=1)  # by hand: the label of larger weight (mixup: no ties)
    predictions = logits.argmax(dim=1)
    assert step["accuracy"] == pytest.approx((predictions == dominant).double().mean().item(), abs=1e-12)
    assert step["accuracy"] != pytest.approx((predictions == batch["label"]).double().mean().item(), abs=1e-12)


def test_mixing_changes_what_is_trained_and_stays_out_of_the_checkpoints_when_off(tmp_path):
    trained = {}
    for name, settings in (("off", ()), ("on", MIXING)):
        trainer = make_trainer(mlp_cfg(tmp_path, "train.epochs=1", *settings))
        (tmp_path / name).mkdir()
        trainer.fit(tmp_path / name)
        trained[name] = load_checkpoint(tmp_path / name / "last.pt")
    assert "mix_generator" not in trained["off"] and trained["on"]["mix_generator"]["device_type"] == "cpu"
    assert isinstance(make_trainer(mlp_cfg(tmp_path)).criterion, nn.CrossEntropyLoss)
    assert not all(torch.equal(tensor, trained["on"]["model"][name]) for name, tensor in trained["off"]["model"].items())
    assert trained["on"]["history"][0]["train_loss"] > trained["off"]["history"][0]["train_loss"]


def test_an_interrupted_and_resumed_run_with_mixup_and_cutmix_ends_bit_equal(tmp_path):
    straight, parts = straight_and_resumed(mlp_cfg, tmp_path, *MIXING, "train.mix_prob=0.8")
    assert_same_run(straight, parts)
    assert torch.equal(straight["mix_generator"]["state"], parts["mix_generator"]["state"])
