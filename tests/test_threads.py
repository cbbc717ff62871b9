"""Thread count: from the config, kept from the run's start on resume, or chosen by the size of the
step (never by its timing)."""
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


@pytest.mark.parametrize("slower_threads", [1, 2])
def test_the_default_for_a_small_step_is_one_thread_whatever_the_timings(slower_threads, monkeypatch):
    """Quiet or busy machine, 1 or 2 threads faster: the choice (hence the run's numbers) is the
    same; the timings are advice only."""
    a, b = torch.randn(64, 784), torch.randn(784, 200)  # 64 x 784 x 200: 20 MFLOP
    timed = lambda run_once, threads: 0.004 if threads == slower_threads else 0.001  # noqa: E731
    monkeypatch.setattr("utils.threads.seconds_per_call", timed)
    message = configure_threads(None, lambda: a @ b, cores=2)
    assert torch.get_num_threads() == 1
    measured = "1: 4.00 ms, 2: 1.00 ms; threads=2 was faster now" if slower_threads == 1 else "1: 1.00 ms, 2: 4.00 ms"
    assert message == (f"Threads: 1 (a step is 20 MFLOP, too small to gain from more; measured per step: "
                       f"{measured}); set threads=N to override")


def test_a_large_step_uses_one_thread_per_core_without_timing(monkeypatch):
    a = torch.randn(1024, 1024)
    monkeypatch.setattr("utils.threads.seconds_per_call", lambda *args, **kwargs: pytest.fail("timed"))
    message = configure_threads(None, lambda: a @ a, cores=2)
    assert torch.get_num_threads() == 2
    assert message == "Threads: 2 (one per core: a step is 2.1 GFLOP); set threads=N to override"


def test_a_resumed_run_keeps_its_thread_count_unless_the_config_sets_one():
    message = configure_threads(None, run_once=None, cores=2, kept=2)
    assert torch.get_num_threads() == 2 and message.startswith("Threads: 2, as when the run started")
    message = configure_threads(1, run_once=None, cores=2, kept=2)
    assert torch.get_num_threads() == 1
    assert message.startswith("Threads: 1 (from the config); the run started with 2, so from here its numbers differ")
    assert configure_threads(2, run_once=None, cores=2, kept=2) == "Threads: 2 (from the config)"
