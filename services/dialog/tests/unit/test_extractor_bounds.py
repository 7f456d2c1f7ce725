"""Every extractor runs in bounded time whatever it is fed.

Adversarial shapes up to 64 kB (long unbroken tokens, runs of separators,
repeated spoken keywords) and random text from hypothesis. The limit (1 s per
call) is about a thousand times what a call costs (bench/extractors.py: under
1 ms at 64 kB): only a super-linear blow-up breaks it, the 20 kB email token
that used to take a second or 30 k digits as a date that took 16 s.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbot.common.agents import DataField
from callbot.dialog.domain.utterance import classify
from callbot.dialog.domain.validators import extract_value, validate_value

GENEROUS_LIMIT_S = 1.0
SIZE = 64 * 1024
FIELDS = [
    DataField(name="email", description="email", type="email"),
    DataField(name="phone", description="phone", type="phone"),
    DataField(name="date", description="date", type="date"),
    DataField(name="number", description="number", type="number"),
    DataField(name="yes", description="yes or no", type="boolean"),
    DataField(name="pick", description="pick", type="choice", choices=("email", "phone")),
    DataField(name="full_name", description="full name"),
]
SHAPES = {
    "one long token": "a" * SIZE,
    "email-like token": "a" * (SIZE - 12) + "@example.com",
    "dots and labels": ("a." * SIZE)[:SIZE],
    "many @": ("a@" * SIZE)[:SIZE],
    "digits": "1" * SIZE,
    "digit groups": ("415 " * SIZE)[:SIZE],
    "spoken at/dot": ("at dot " * SIZE)[:SIZE],
    "digit words": ("five " * SIZE)[:SIZE],
    "date-like": ("12/" * SIZE)[:SIZE],
    "ordinals": ("3rd " * SIZE)[:SIZE],
}


def _assert_bounded(text: str) -> None:
    for field in FIELDS:
        started = time.perf_counter()
        validate_value(field, extract_value(field, text, "US"), "US")
        # The model path: a recorded value is judged without extraction first.
        validate_value(field, text, "US")
        elapsed = time.perf_counter() - started
        assert elapsed < GENEROUS_LIMIT_S, f"{field.type} took {elapsed:.2f} s"
    started = time.perf_counter()
    classify(text)
    assert time.perf_counter() - started < GENEROUS_LIMIT_S


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_adversarial_shapes_are_bounded(shape: str) -> None:
    _assert_bounded(SHAPES[shape])


_PIECES = st.sampled_from(
    ["a", "1", ".", "@", " ", "at ", "dot ", "-", "five ", "march ", "3rd ", ",", "?", "x" * 50]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(_PIECES, min_size=1, max_size=40), repeat=st.integers(1, 2000))
def test_random_repetitions_are_bounded(pieces: list[str], repeat: int) -> None:
    _assert_bounded(("".join(pieces) * repeat)[:SIZE])


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=3000))
def test_any_text_is_bounded_and_never_raises(text: str) -> None:
    _assert_bounded(text)
