import pytest

from suanli.domain.errors import IllegalTransition
from suanli.domain.jobstate import ALLOWED, TERMINAL_STATES, JobState, check_transition


def test_happy_path() -> None:
    s = JobState.QUEUED
    for nxt in (JobState.PLACED, JobState.RUNNING, JobState.COMPLETED):
        s = check_transition(s, nxt)
    assert s is JobState.COMPLETED


def test_replacement_goes_back_to_queued() -> None:
    assert check_transition(JobState.RUNNING, JobState.QUEUED) is JobState.QUEUED
    assert check_transition(JobState.PLACED, JobState.QUEUED) is JobState.QUEUED


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_are_final(terminal: JobState) -> None:
    for target in JobState:
        with pytest.raises(IllegalTransition):
            check_transition(terminal, target)


@pytest.mark.parametrize("a, b", [
    (JobState.QUEUED, JobState.RUNNING),
    (JobState.QUEUED, JobState.COMPLETED),
    (JobState.PLACED, JobState.COMPLETED),
    (JobState.PLACED, JobState.TIMEOUT),
    (JobState.RUNNING, JobState.PLACED),
    (JobState.QUEUED, JobState.QUEUED),
])
def test_illegal_transitions_raise(a: JobState, b: JobState) -> None:
    with pytest.raises(IllegalTransition, match=f"from {a} to {b}"):
        check_transition(a, b)


def test_every_state_has_a_rule() -> None:
    assert set(ALLOWED) == set(JobState)
