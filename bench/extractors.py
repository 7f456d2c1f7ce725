"""Each extractor's time against input size (1 kB to 64 kB), adversarial shapes included.

Every field type's extract + validate, and the utterance classifier, on inputs
shaped to make backtracking patterns slow (long unbroken tokens, runs of
separators, repeated spoken keywords). Bounded extraction shows as a flat or
linear row; a super-linear one would grow 4x per doubling.
Usage: .venv/bin/python bench/extractors.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from _stats import percentile  # bench/ is on sys.path when a script here runs

from callbot.common.agents import DataField
from callbot.dialog.domain.utterance import classify
from callbot.dialog.domain.validators import extract_value, validate_value

SIZES_KB = (1, 2, 4, 8, 16, 32, 64)
SHAPES: dict[str, Callable[[int], str]] = {
    "one long token": lambda size: "a" * size,
    "email-like token": lambda size: "a" * (size - 12) + "@example.com",
    "dots and labels": lambda size: ("a." * size)[:size],
    "many @": lambda size: ("a@" * size)[:size],
    "digits": lambda size: "1" * size,
    "digit groups": lambda size: ("415 " * size)[:size],
    "spoken at/dot": lambda size: ("at dot " * size)[:size],
    "digit words": lambda size: ("five " * size)[:size],
    "date-like": lambda size: ("12/" * size)[:size],
    "sentences": lambda size: ("My name is Ada. " * size)[:size],
}
FIELDS = [
    DataField(name="email", description="email", type="email"),
    DataField(name="phone", description="phone", type="phone"),
    DataField(name="date", description="date", type="date"),
    DataField(name="number", description="number", type="number"),
    DataField(name="yes", description="yes or no", type="boolean"),
    DataField(name="pick", description="pick", type="choice", choices=("email", "phone")),
    DataField(name="full_name", description="full name"),
]


def time_once(extractor: Callable[[str], object], text: str) -> float:
    started = time.perf_counter()
    extractor(text)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"worst shape's p50 in ms per call, {args.repeat} runs per cell")
    print(
        f"{'extractor':<12}"
        + "".join(f"{size:>8} kB" for size in SIZES_KB)
        + "  worst shape at 64 kB"
    )
    extractors: dict[str, Callable[[str], object]] = {
        field.type: (
            lambda text, field=field: validate_value(field, extract_value(field, text, "US"), "US")
        )
        for field in FIELDS
    }
    extractors["classify"] = classify
    for name, extractor in extractors.items():
        row: list[float] = []
        worst_shape = ""
        for size_kb in SIZES_KB:
            worst = 0.0
            for shape, make in SHAPES.items():
                text = make(size_kb * 1024)
                samples = [time_once(extractor, text) for _ in range(args.repeat)]
                p50 = percentile(samples, 0.5) * 1000
                if p50 > worst:
                    worst, worst_shape = p50, shape
            row.append(worst)
        print(f"{name:<12}" + "".join(f"{cell:11.3f}" for cell in row) + f"  {worst_shape}")


if __name__ == "__main__":
    main()
