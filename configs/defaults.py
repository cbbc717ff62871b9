"""Sections every experiment shares; an experiment config copies them and changes a few keys."""
from easydict import EasyDict

from configs.paths import RUNS_DIR

top_level_defaults = dict(
    exp_dir=RUNS_DIR,
    seed=0,
    device="auto",  # auto | cpu | cuda | cuda:N | mps
    threads=None,  # CPU intra-op threads; None: set by the step's size, kept on resume (utils/threads.py)
    # Evaluation: test-time augmentation (executors/tools/tta.py): none | flip | flip_crops; the batch of
    # the test and val splits (and scripts/evaluate.py), None: train.batch_size (docs/performance.md).
    eval=dict(tta="none", batch_size=None),
)

validation_defaults = dict(  # of every data section
    # Share of the training split held out for validation (stratified per class, fixed by
    # val_seed): best.pt is then chosen on it. 0: chosen on the test split, as the assignment
    # asks. Test metrics are reported every epoch either way.
    val_fraction=0.0,
    # Seed of the hold-out; None: the run's seed. Fix it (e.g. 0) to keep the same validation
    # images across seeds, so that validation figures vary with training only.
    val_seed=None,
)

train_defaults = EasyDict(
    epochs=10,
    batch_size=64,
    optimizer="SGD",  # any torch.optim class name
    optimizer_args={"momentum": 0.9},
    lr=0.1,
    # None, or {"base_lr": 0.1, "base_batch_size": 256}: lr = base_lr * batch_size / base_batch_size
    lr_scaling=None,
    weight_decay=0.0,
    no_bias_decay=False,  # True: weight decay only on conv and linear weights
    scheduler="constant",  # cosine | constant; stepped every iteration
    warmup_epochs=0.0,  # linear warmup, stepped every iteration
    label_smoothing=0.0,
    amp="auto",  # auto | bf16 | fp16 | off (auto: bf16 on GPUs of compute capability 8.0+, fp16 below, off on CPU)
    compile=False,  # True: torch.compile the model for training (falls back to eager, with a note, if it fails)
    # True: on a CUDA device replay each training step from a CUDA graph where it can be captured
    # (bf16 or fp32, no compile, one process; executors/step/graphed.py), else eager steps with a note.
    cuda_graph=True,
    sync_bn=False,  # under torchrun: BatchNorm statistics over all processes' shares (SyncBatchNorm)
    max_nonfinite_steps=50,  # stop (exit 1) after this many consecutive NaN/inf losses; None: never
    grad_clip_norm=None,
    confusion_matrix_every_epoch=False,
    overfit_batch_steps=500,
    # Mixup / CutMix on every training batch (executors/tools/mixing.py); both 0: off.
    mixup_alpha=0.0,  # Beta(alpha, alpha) of each sample's mixup weight; 0: no mixup
    cutmix_alpha=0.0,  # Beta(alpha, alpha) of each sample's cutmix area; 0: no cutmix
    mix_prob=None,  # probability that a batch is mixed at all; None: 1.0
    mix_switch_prob=None,  # with both on: probability that a sample takes cutmix, else mixup; None: 0.5
    ema_decay=None,  # e.g. 0.9998: also keep and evaluate an EMA of the weights (docs/training-tools.md)
    ema_warmup=False,  # True: the EMA's decay warms up as min(ema_decay, (1 + t) / (10 + t)) at update t
)

logger_defaults = EasyDict(
    backend="mlflow",  # mlflow | neptune | tensorboard | none
    experiment="default",
    tracking_uri=None,  # None: sqlite:///<exp_dir>/mlflow.db
    neptune_project=None,  # "workspace/project" for a self-hosted or archived project
    neptune_mode=None,  # None: offline unless a project and NEPTUNE_API_TOKEN are given
    flush_every=200,  # buffered per-step metrics are written in batches of this many steps
)
