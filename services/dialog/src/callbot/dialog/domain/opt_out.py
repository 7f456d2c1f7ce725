"""Opt-out: the callee asks not to be called again.

Two ways in, one way out: the model's `opt_out` tool (LLM path), and the
utterance classifier's `opt_out` intent (its phrases are in
`domain.utterance.INTENT_RULES`), checked before the model is asked (both
paths, so the deterministic policy honours them too). Either ends the call with
`ended_by: opt_out` after the agent's `opt_out_message`, and persistence marks
the recipient opted out. The phrases are deliberately specific: a refusal of
this call ("not now", "I'm busy") is not an opt-out.
"""

from __future__ import annotations

from callbot.dialog.domain.utterance import classify

OPT_OUT_TOOL = "opt_out"


def is_opt_out_request(utterance: str) -> bool:
    """The callee asked not to be called again ("take me off your list")."""
    return classify(utterance).kind == "opt_out"
