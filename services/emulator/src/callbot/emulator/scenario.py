"""Scenarios: who answers a placed call, and what they say.

A scenario is plain data (YAML on disk, JSON over ``POST /_control/scenarios``)::

    name: demo
    to: "+15005550006"      # answers calls placed to this number; omit for the default scenario
    outcome: answered       # answered | busy | no-answer | failed
    answered_by: human      # what machine detection finds, when the call asks for it
    ring_s: 2               # emulated seconds of ringing before the outcome
    speed: 100              # the call plays this many times faster than real time
    steps:                  # the callee's side, one step per <Gather> the call reaches
      - say: "Hi, yes this is Ada."
        confidence: 0.95    # default 0.92
        duration_s: 2       # default: estimated from the words
      - silence: {}         # says nothing until the <Gather> times out
      - silence: {duration_s: 3}
      - hangup: {}          # hangs up instead of answering
      # ConversationRelay calls (the TwiML connects a WebSocket) also know:
      - say: "Wait, stop."
        barge_in_after_tokens: 3  # said over the agent's reply once 3 text tokens arrived
      - dtmf: "1"           # presses a key
      - drop_socket: {}     # the WebSocket breaks (Twilio then asks the <Connect action>)

Every duration is emulated time: it feeds the reported figures (``CallDuration``,
``RecordingDuration``, timestamps) while the emulator only waits ``duration / speed``
real seconds, so tests stay fast and the figures stay deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

Outcome = Literal["answered", "busy", "no-answer", "failed"]
AnsweredBy = Literal[
    "human",
    "machine_start",
    "machine_end_beep",
    "machine_end_silence",
    "machine_end_other",
    "fax",
    "unknown",
]

# Conversational English runs at about 150 words a minute.
_WORDS_PER_SECOND = 2.5


def speaking_seconds(text: str) -> float:
    """Emulated time it takes to say ``text`` aloud: at least one second."""
    return max(1.0, math.ceil(len(text.split()) / _WORDS_PER_SECOND))


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SayStep(_Strict):
    """The callee speaks; the speech recogniser hears ``say`` with ``confidence``."""

    say: str = Field(min_length=1)
    confidence: float = Field(default=0.92, ge=0.0, le=1.0)
    duration_s: float | None = Field(default=None, ge=0.0)
    # ConversationRelay: the callee starts speaking over the agent's reply once
    # this many text tokens of it arrived (Twilio sends `interrupt`, then the prompt).
    barge_in_after_tokens: int | None = Field(default=None, ge=1)

    @property
    def seconds(self) -> float:
        return speaking_seconds(self.say) if self.duration_s is None else self.duration_s


class SilenceSpec(_Strict):
    # None: silent until the <Gather> gives up (its `timeout` attribute).
    duration_s: float | None = Field(default=None, ge=0.0)


class SilenceStep(_Strict):
    """The callee says nothing."""

    silence: SilenceSpec = Field(default_factory=SilenceSpec)


class HangupSpec(_Strict):
    pass


class HangupStep(_Strict):
    """The callee hangs up instead of answering."""

    hangup: HangupSpec = Field(default_factory=HangupSpec)


class DtmfStep(_Strict):
    """The callee presses a key (ConversationRelay sends it as a `dtmf` message)."""

    dtmf: str = Field(pattern=r"^[0-9*#]$")


class DropSocketSpec(_Strict):
    pass


class DropSocketStep(_Strict):
    """The ConversationRelay WebSocket breaks mid-call."""

    drop_socket: DropSocketSpec = Field(default_factory=DropSocketSpec)


_STEP_KINDS = ("say", "silence", "hangup", "dtmf", "drop_socket")


def _step_kind(value: Any) -> str | None:
    """The one step key present (``say``/``silence``/``hangup``); None lets pydantic explain."""
    if isinstance(value, Mapping):
        present = [kind for kind in _STEP_KINDS if kind in value]
    else:
        present = [kind for kind in _STEP_KINDS if hasattr(value, kind)]
    return present[0] if len(present) == 1 else None


Step = Annotated[
    Annotated[SayStep, Tag("say")]
    | Annotated[SilenceStep, Tag("silence")]
    | Annotated[HangupStep, Tag("hangup")]
    | Annotated[DtmfStep, Tag("dtmf")]
    | Annotated[DropSocketStep, Tag("drop_socket")],
    Discriminator(
        _step_kind,
        custom_error_type="invalid_step",
        custom_error_message=(
            "a step needs exactly one of the keys 'say', 'silence', 'hangup', 'dtmf', 'drop_socket'"
        ),
    ),
]


class Scenario(_Strict):
    name: str = "unnamed"
    to: str | None = None
    outcome: Outcome = "answered"
    answered_by: AnsweredBy = "human"
    # How long machine detection takes to decide (Twilio's MachineDetectionDuration).
    amd_duration_ms: int = Field(default=2500, ge=0)
    ring_s: float = Field(default=2.0, ge=0.0)
    speed: float = Field(default=100.0, gt=0.0)
    # Reported on `failed` calls, as Twilio's ErrorCode / ErrorMessage.
    error_code: int = 31005
    error_message: str = "Connection error: the call could not be connected"
    steps: list[Step] = Field(default_factory=list)


DEFAULT_SCENARIO = Scenario(name="default")


class ScenarioError(ValueError):
    """A scenario file or payload that does not fit the schema; the message says where."""


def parse_scenario(data: object, *, source: str, default_name: str | None = None) -> Scenario:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{source}: a scenario must be a mapping, got {type(data).__name__}")
    fields = dict(data)
    if default_name is not None:
        fields.setdefault("name", default_name)
    try:
        return Scenario.model_validate(fields)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: not a valid scenario:\n{exc}") from exc


def load_scenario_file(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from exc
    return parse_scenario(data, source=str(path), default_name=path.stem)


def load_scenario_dir(directory: Path) -> list[Scenario]:
    if not directory.is_dir():
        raise ScenarioError(f"{directory}: no such scenario directory")
    paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    return [load_scenario_file(path) for path in paths]


class ScenarioBook:
    """Scenarios keyed by the ``To`` number they answer, plus one default for the rest.

    Scenarios given at construction are the baseline; ``register`` adds or replaces at
    runtime, and ``reset`` returns to the baseline.
    """

    def __init__(self, scenarios: Iterable[Scenario] = ()) -> None:
        self._baseline_by_to: dict[str | None, Scenario] = {None: DEFAULT_SCENARIO}
        explicit_default: Scenario | None = None
        for scenario in scenarios:
            if scenario.to is None:
                if explicit_default is not None:
                    raise ScenarioError(
                        f"scenarios {explicit_default.name!r} and {scenario.name!r} both omit "
                        "'to'; only one default scenario is allowed"
                    )
                explicit_default = scenario
            elif scenario.to in self._baseline_by_to:
                raise ScenarioError(
                    f"scenarios {self._baseline_by_to[scenario.to].name!r} and "
                    f"{scenario.name!r} both answer {scenario.to}; give each its own 'to'"
                )
            self._baseline_by_to[scenario.to] = scenario
        self._by_to = dict(self._baseline_by_to)

    def register(self, scenario: Scenario) -> None:
        self._by_to[scenario.to] = scenario

    def reset(self) -> None:
        self._by_to = dict(self._baseline_by_to)

    def for_number(self, to: str) -> Scenario:
        return self._by_to.get(to) or self._by_to[None]

    def all(self) -> list[Scenario]:
        return list(self._by_to.values())
