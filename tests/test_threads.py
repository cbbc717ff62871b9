"""Thread count: from the config, or the fastest of the candidates by timing the workload."""
import time

import pytest
import torch

from utils.errors import ConfigError
from utils.threads import candidate_counts, configure_threads


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_candidates_are_powers_of_two_and_the_core_count():
    assert candidate_counts(1) == [1]
    assert candidate_counts(2) == [1, 2]
    assert candidate_counts(6) == [1, 2, 4, 6]


def test_config_value_is_used_as_given():
    assert configure_threads(1, run_once=None, cores=2) == "Threads: 1 (from the config)"
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True])
def test_invalid_values_are_config_errors(bad):
    with pytest.raises(ConfigError, match="threads="):
        configure_threads(bad, run_once=None)


def test_measurement_picks_the_fastest_count():
    """A small workload that is slow with 2 threads (as on a busy 2-vCPU machine): 1 is chosen."""
    def run_once():
        time.sleep(0.004 if torch.get_num_threads() == 2 else 0.001)
    message = configure_threads(None, run_once, cores=2)
    assert torch.get_num_threads() == 1 and message.startswith("Threads: 1, measured")


def test_a_long_step_keeps_one_thread_per_core():
    message = configure_threads(None, lambda: time.sleep(0.06), cores=2)
    assert torch.get_num_threads() == 2 and "one per core" in message
