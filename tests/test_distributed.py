"""Data parallelism through torchrun with the gloo backend on the CPU: two processes train
what one process trains on the same global batch, rank 0 alone writes, evaluation counts
every test image once, and resume works from checkpoints of any process count."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from datasets.loading.device_loader import DeviceLoader
from datasets.synthetic import write_kmnist_idx
from datasets.transforms.building import build_transforms
from executors.distributed import all_reduce_sum
from executors.evaluation import evaluate_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kmnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kmnist")
    write_kmnist_idx(root, train_per_class=40, test_per_class=10)  # 400 / 100 images
    return root


def train(root, exp_dir, processes, *overrides, resume=None):
    """Run scripts/train.py (under torchrun when processes > 1); returns the finished process."""
    settings = [f"data.root='{root}'", "data.md5=None", "data.download=False", f"exp_dir='{exp_dir}'",
                "device='cpu'", "threads=1", "train.batch_size=32", "train.scheduler='constant'",
                "logger.backend='none'", *overrides]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = (launcher if processes > 1 else [sys.executable]) + [str(REPO / "scripts" / "train.py"), "--cfg", "mlp",
                                                                   "--set", *settings]
    command += ["--resume", resume] if resume else []
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def weights(run_dir):
    return torch.load(run_dir / "last.pt", weights_only=True)["model"]


def test_two_processes_train_what_one_trains_and_only_rank_0_writes(kmnist_root, tmp_path):
    single = train(kmnist_root, tmp_path / "single", 1, "train.epochs=2")
    parallel = train(kmnist_root, tmp_path / "ddp", 2, "train.epochs=2", "logger.backend='mlflow'")
    assert single.returncode == 0, single.stderr[-2000:]
    assert parallel.returncode == 0, parallel.stderr[-2000:]
    assert parallel.stdout.count("Run directory:") == 1  # the other process prints nothing
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["mlartifacts", "mlflow.db", "mlp_base"]
    one, two = (json.loads((d / "mlp_base" / "summary.json").read_text()) for d in (tmp_path / "single", tmp_path / "ddp"))
    assert abs(one["final_test_accuracy"] - two["final_test_accuracy"]) <= 0.002
    assert two["final_test_loss"] == pytest.approx(one["final_test_loss"], rel=1e-4)
    for name, tensor in weights(tmp_path / "single" / "mlp_base").items():
        torch.testing.assert_close(weights(tmp_path / "ddp" / "mlp_base")[name], tensor, atol=1e-5, rtol=1e-4)
    import mlflow
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'ddp' / 'mlflow.db'}")
    experiments = client.search_experiments()
    assert len(client.search_runs([e.experiment_id for e in experiments])) == 1


def test_resume_under_ddp_from_checkpoints_of_any_process_count(kmnist_root, tmp_path):
    straight = train(kmnist_root, tmp_path / "straight", 2, "train.epochs=2")
    assert straight.returncode == 0, straight.stderr[-2000:]
    expected = weights(tmp_path / "straight" / "mlp_base")
    for first_processes in (2, 1):  # interrupted after epoch 1 by a DDP run, then by a single process
        exp_dir = tmp_path / f"from_{first_processes}"
        assert train(kmnist_root, exp_dir, first_processes, "train.epochs=1").returncode == 0
        resumed = train(kmnist_root, exp_dir, 2, "train.epochs=2", resume="auto")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert "Resumed from" in resumed.stdout
        for name, tensor in weights(exp_dir / "mlp_base").items():
            if first_processes == 2:
                assert torch.equal(tensor, expected[name]), name
            else:  # one process sums gradients in another order: equal within float rounding
                torch.testing.assert_close(tensor, expected[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("setting", ["train.batch_size=33", "eval.batch_size=33"])
def test_an_error_in_the_processes_stops_the_run_with_its_message(kmnist_root, tmp_path, setting):
    failed = train(kmnist_root, tmp_path, 2, setting)
    assert failed.returncode != 0
    assert f"{setting} is the global batch and must divide among the 2 processes" in failed.stderr
    assert not (tmp_path / "mlp_base").exists()


def _evaluate_share(rank, world_size, init_file, images, labels, model, result_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    loader = DeviceLoader(images, labels, build_transforms([("ToTensor", {})], family="batched"), 16, shuffle=False,
                          seed=0, rank=rank, world_size=world_size)
    metrics = evaluate_model(model, loader, torch.device("cpu"), 10, reduce=all_reduce_sum)
    if rank == 0:
        torch.save({k: metrics[k] for k in ("loss", "accuracy", "confusion")}, result_file)
    dist.destroy_process_group()


def test_evaluation_is_summed_exactly_over_processes(tmp_path):
    """101 test images over 3 processes (shares of 34, 34, 33): the reduced confusion matrix
    counts each image once and equals the single-process one."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (101, 1, 4, 4), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (101,), generator=generator)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
    mp.spawn(_evaluate_share, args=(3, tmp_path / "init", images, labels, model, tmp_path / "result.pt"), nprocs=3)
    reduced = torch.load(tmp_path / "result.pt", weights_only=True)
    whole = DeviceLoader(images, labels, build_transforms([("ToTensor", {})], family="batched"), 16, shuffle=False,
                         seed=0)
    single = evaluate_model(model, whole, torch.device("cpu"), 10)
    assert int(reduced["confusion"].sum()) == 101
    assert torch.equal(reduced["confusion"], single["confusion"])
    assert reduced["loss"] == pytest.approx(single["loss"], rel=1e-6)  # float32 sums of other batch shapes
    assert reduced["accuracy"] == single["accuracy"]


def test_ema_under_ddp_equals_the_single_process_ema(kmnist_root, tmp_path):
    single = train(kmnist_root, tmp_path / "single", 1, "train.epochs=1", "train.ema_decay=0.9")
    parallel = train(kmnist_root, tmp_path / "ddp", 2, "train.epochs=1", "train.ema_decay=0.9")
    assert single.returncode == 0, single.stderr[-2000:]
    assert parallel.returncode == 0, parallel.stderr[-2000:]
    one, two = (torch.load(d / "mlp_base" / "last.pt", weights_only=True)["ema"] for d in (tmp_path / "single",
                                                                                          tmp_path / "ddp"))
    assert one["updates"] == two["updates"] > 0
    for name, tensor in one["weights"].items():
        torch.testing.assert_close(two["weights"][name], tensor, atol=1e-5, rtol=1e-4)


def _share_trainer(rank, world_size, init_file, kmnist_root, *overrides):
    """Process `rank`'s Trainer of the mlp config on its share of the KMNIST files, in a gloo group."""
    from datasets.loading.loaders import build_loaders
    from executors.distributed import Processes
    from executors.trainer import Trainer
    from utils.config import load_config
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    cfg = load_config("mlp", [f"data.root='{kmnist_root}'", "data.md5=None", "data.download=False", "device='cpu'",
                              "train.batch_size=32", "logger.backend='none'", *overrides])
    cfg.model.layers.insert(2, ("BatchNorm1d", {"num_features": 200}))  # buffers each process updates itself
    loaders = build_loaders(cfg, rank, world_size)
    return Trainer(cfg, *loaders, val_loader=loaders.val, processes=Processes(rank, world_size, rank))


def _gathered(tensors, world_size):
    """Every process's `tensors`, flattened into one float64 tensor each (a collective call)."""
    flat = torch.cat([t.detach().double().flatten() for t in tensors])
    copies = [torch.empty_like(flat) for _ in range(world_size)]
    dist.all_gather(copies, flat)
    return copies


def _train_share_with_ema(rank, world_size, init_file, kmnist_root, result_file):
    trainer = _share_trainer(rank, world_size, init_file, kmnist_root, "train.ema_decay=0.9")
    trainer.train_epoch(0)
    parameters = _gathered(list(trainer.ema.module.parameters()), world_size)
    own_buffers = _gathered(list(trainer.ema.module.buffers()), world_size)
    trainer.evaluate_epoch()  # takes rank 0's BatchNorm buffers
    state = _gathered(list(trainer.ema.module.state_dict().values()), world_size)
    if rank == 0:
        torch.save({"parameters": parameters, "own_buffers": own_buffers, "state": state}, result_file)
    dist.destroy_process_group()


def test_ema_is_one_average_identical_on_every_process(kmnist_root, tmp_path):
    mp.spawn(_train_share_with_ema, args=(2, tmp_path / "init", kmnist_root, tmp_path / "result.pt"), nprocs=2)
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    assert torch.equal(*result["parameters"])  # the average of the DDP-synchronised weights
    assert not torch.equal(*result["own_buffers"])  # each process's running statistics of its share ...
    assert torch.equal(*result["state"])  # ... are rank 0's once evaluated


def _train_share_with_mixing(rank, world_size, init_file, kmnist_root, result_file):
    from executors.tools.mixing import mix_generator
    trainer = _share_trainer(rank, world_size, init_file, kmnist_root, "train.mixup_alpha=0.4",
                             "train.cutmix_alpha=1.0")
    start = [p.detach().clone() for p in trainer.model.parameters()]
    train = trainer.train_epoch(0)
    unused = mix_generator(trainer.cfg.seed, "cpu", rank).get_state()
    result = {"parameters": _gathered(list(trainer.model.parameters()), world_size),
              "moved": _gathered([p - s for p, s in zip(trainer.model.parameters(), start)], world_size),
              "generators": _gathered([trainer.mixer.generator.get_state()], world_size),
              "drew": _gathered([torch.tensor(not torch.equal(trainer.mixer.generator.get_state(), unused))],
                                world_size),
              "loss": _gathered([torch.tensor(train["loss"])], world_size)}
    if rank == 0:
        torch.save(result, result_file)
    dist.destroy_process_group()


def test_mixing_under_ddp_mixes_each_share_with_its_own_draws_and_keeps_one_model(kmnist_root, tmp_path):
    mp.spawn(_train_share_with_mixing, args=(2, tmp_path / "init", kmnist_root, tmp_path / "result.pt"), nprocs=2)
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    assert torch.equal(*result["parameters"])  # every process holds the same weights after the epoch
    assert result["moved"][0].abs().max() > 0 and all(loss.isfinite().all() for loss in result["loss"])
    assert all(drew.item() == 1 for drew in result["drew"])  # each process mixed its share ...
    assert not torch.equal(*result["generators"])  # ... from a generator of its own rank
