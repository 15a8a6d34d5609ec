import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "stack"))

from stack import THREE_MODES, Stack  # noqa: E402


@pytest.fixture(scope="session")
def stack_session():
    s = Stack(clusters=("prod", "staging")).start()
    yield s
    s.stop()


@pytest.fixture
def stack(stack_session):
    """The running stack, reset to the bootstrapped state before each test."""
    stack_session.reset()
    yield stack_session


@pytest.fixture(scope="session")
def modes_session():
    s = Stack(clusters=tuple(THREE_MODES), modes=THREE_MODES).start()
    yield s
    s.stop()


@pytest.fixture
def st(modes_session):
    """Three clusters, one per authentication mode, reset before each test."""
    modes_session.reset()
    yield modes_session
