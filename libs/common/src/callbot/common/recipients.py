"""The recipient document (`recipients` collection): what callbot knows about
one number as seen by one agent, kept by persistence from finished calls.

persistence writes it; gateway and dialog read it. Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from callbot.common.calls import CallbackRequest, CallStatus, EndedBy, SummarySource


def recipient_key(agent_id: str, to: str) -> str:
    """The document's `_id`. Agent ids cannot hold a colon, so it is unambiguous."""
    return f"{agent_id}:{to}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class CollectedValue(_Model):
    """A data field's latest value, and the call it came from (`at`: that call's start)."""

    value: Any
    call_id: str
    at: datetime


class CallOutcome(_Model):
    """How the recipient's latest call went."""

    call_id: str
    at: datetime
    status: CallStatus | None = None
    ended_by: EndedBy | None = None
    # The callee asked to be called back (at `when`, if they said a time).
    callback_request: CallbackRequest | None = None


class OptOut(_Model):
    """The recipient asked not to be called again by this agent, in `call_id`."""

    call_id: str
    at: datetime


class LastSummary(_Model):
    """The summary of the recipient's latest summarized call (`at`: that call's
    start): how the next call learns about the earlier ones, the recording's
    transcript included once a summary was remade with it."""

    call_id: str
    at: datetime
    summary: str
    model: str | None = None
    sources: tuple[SummarySource, ...] = ()
    summarized_at: datetime


class RecipientDocument(_Model):
    """One `(agent_id, to)`: its calls, the data they collected, its opt-out."""

    key: str = Field(validation_alias=AliasChoices("_id", "key"))
    agent_id: str
    to: str
    call_ids: tuple[str, ...] = ()
    total_calls: int = 0
    answered_calls: int = 0
    last_call_at: datetime | None = None
    last_outcome: CallOutcome | None = None
    data_collected: dict[str, CollectedValue] = Field(default_factory=dict)
    # Fields some call asked for (its `data_fields`) that no call collected:
    # what `GET /v1/recipients?missing=<field>` finds, by index.
    missing_fields: tuple[str, ...] = ()
    data_complete: bool = False
    opted_out: OptOut | None = None
    profile: dict[str, Any] = Field(default_factory=dict)
    profile_call_id: str | None = None
    profile_at: datetime | None = None
    last_summary: LastSummary | None = None
    updated_at: datetime | None = None

    @field_validator("missing_fields")
    @classmethod
    def _in_name_order(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        """MongoDB keeps the set in the order names were added; a set has none."""
        return tuple(sorted(names))

    def known_data(self) -> dict[str, Any]:
        """Each field's latest value, as the agent's context shows it."""
        return {name: collected.value for name, collected in self.data_collected.items()}
