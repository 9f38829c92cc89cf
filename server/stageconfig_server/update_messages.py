"""The words an admin reads when an update is refused or stored unverified.

A provider's verdict already says what happened in one sentence ("OpenAI rejected the
API key (HTTP 401: …)."); these messages add only what the update did about it and what
to do next, so each fact appears once. Each builder returns text, never raises: the
errors themselves are raised by ``updates``.
"""

from __future__ import annotations

from stageconfig_server.domain import StageConfig, StageType
from stageconfig_server.verification import Verdict


def clause(reason: str) -> str:
    """A provider's sentence ready to be followed by more words: without its closing
    period, nor the one its quoted detail ends with (``… (HTTP 401: Bad key.).``)."""
    text = reason.strip().rstrip(".")
    if text.endswith(".)"):
        text = text[:-2] + ")"
    return text


def key_rejected(verdict: Verdict) -> str:
    """KeyRejected: the provider refused the key."""
    return f"{clause(verdict.reason)}. Nothing was changed."


def key_unverified(verdict: Verdict, stage: StageType, working: StageConfig) -> str:
    """KeyUnverified: the provider could not verify a key meant to replace ``working``."""
    return (
        f"{clause(verdict.reason)}. The key could not be verified and stage {stage.value} "
        f"holds a working config (revision {working.revision}, "
        f"{working.provider_kind.value}, {working.status.value}), so nothing was changed; "
        "set allow_unverified to store the key anyway."
    )


def model_required(verdict: Verdict) -> str:
    """InvalidArgument on ``model``: no model was given and the provider listed none."""
    return (
        f"is required: {clause(verdict.reason)}, so there is no model list to choose from; "
        "name the model, or try again when the provider answers"
    )


def stored_unverified(verdict: Verdict, *, allowed: bool) -> str:
    """The status reason of a key stored although the provider could not verify it:
    on purpose (``allow_unverified``) or with nothing working to protect."""
    if allowed:
        return f"stored without verification (allow_unverified): {clause(verdict.reason)}"
    return f"the key could not be verified: {clause(verdict.reason)}"
