"""Opt-out: the callee asks not to be called again.

Two ways in, one way out: the model's `opt_out` tool (LLM path), and the
phrases below, checked before the model is asked (both paths, so the
deterministic policy honours them too). Either ends the call with
`ended_by: opt_out` after the agent's `opt_out_message`, and persistence marks
the recipient opted out. The phrases are deliberately specific: a refusal of
this call ("not now", "I'm busy") is not an opt-out.
"""

from __future__ import annotations

import re

OPT_OUT_TOOL = "opt_out"

_PHRASES = (
    r"take me off (?:of )?(?:your|the|this) (?:call(?:ing)? )?list",
    r"remove me from (?:your|the|this) (?:call(?:ing)? )?list",
    r"remove my (?:number|name)",
    r"(?:don't|do not|never|stop) call(?:ing)? (?:me|this number|here)",
    r"(?:don't|do not) (?:ever )?call (?:me )?again",
    r"(?:put me on|add me to) (?:your|the) do not call list",
    r"i (?:don't|do not) want (?:to be called|any more calls|these calls)",
    r"stop calling",
    r"unsubscribe",
)
_OPT_OUT = re.compile(r"\b(?:" + "|".join(_PHRASES) + r")\b")


def is_opt_out_request(utterance: str) -> bool:
    """The callee asked not to be called again ("take me off your list")."""
    text = " ".join(utterance.lower().replace("\u2019", "'").split())
    return bool(_OPT_OUT.search(text))
