"""The tracker run of a Trainer's run folder: config.json, the Logger, its tracker record."""
import contextlib
import json

from logs.Logger import TRACKER_FILE, Logger, public_config
from utils.atomic_files import write_text_atomic
from utils.config import to_plain


@contextlib.contextmanager
def tracked_run(trainer):
    """Main process (trainer.run_dir set): write config.json, open the run's Logger (continuing
    trainer.logger_run_id's tracker run on resume, and recording the id in the trainer), write its
    tracker record, log the hyperparameters and yield the Logger; other processes: yield None."""
    run_dir, cfg = trainer.run_dir, trainer.cfg
    if run_dir is None:
        yield None
        return
    write_text_atomic(run_dir / "config.json", json.dumps(public_config(cfg), indent=2))
    with Logger(cfg.logger, run_dir, run_dir.name, trainer.logger_run_id) as logger:
        trainer.logger_run_id = logger.run_id
        if logger.run_id is not None:  # a folder abandoned before last.pt can close its tracker run
            write_text_atomic(run_dir / TRACKER_FILE, json.dumps(logger.tracker_record))
        print(logger.location, flush=True)
        logger.log_hyperparameters({**to_plain(cfg), "trainable_parameters": trainer.trainable_parameters,
                                    "device": str(trainer.device), "precision": trainer.precision.name})
        yield logger
