"""Which model, model cache and status a verified change stores (UpdateConfig,
RollbackConfig, the legacy import): the part of the change policy that reads only the
provider's verdict, the request and the stage's current config.

    unverifiable  the requested model, else the current one (same provider), else
                  InvalidArgument("model"); the known cache is kept; status ERROR, or
                  UNVERIFIED when the change allows it
    listed        the requested model when offered (else InvalidArgument naming a few
                  offered ones; the import takes the first and stores WARNING), the
                  current one when still offered, else the first offered
"""

from __future__ import annotations

from datetime import datetime

from stageconfig_server import update_messages as messages
from stageconfig_server.domain import ConfigStatus, ProviderKind, StageConfig, StatusCause
from stageconfig_server.errors import InvalidArgument
from stageconfig_server.verification import Settled, Verdict

SUGGESTED_MODELS = 5
"""How many offered models a refusal of an unknown model names."""


def settle(
    verdict: Verdict,
    provider_kind: ProviderKind,
    requested: str | None,
    same: StageConfig | None,
    now: datetime,
    *,
    allow_unverified: bool = False,
    lenient_model: bool = False,
) -> Settled:
    """The model, cache and status a verified change stores. ``same`` is the stage's
    current config when it already uses this provider (its model and cache carry over);
    ``lenient_model`` replaces a model the provider lacks instead of refusing it."""
    provider = provider_kind.value
    if verdict.models is None:
        # The provider could not be asked: keep what we knew and say so.
        status = ConfigStatus.UNVERIFIED if allow_unverified else verdict.status
        reason = messages.stored_unverified(verdict, allowed=allow_unverified)
        if requested is not None:
            model = requested
        elif same is not None:
            model = same.model
        else:
            raise InvalidArgument("model", messages.model_required(verdict))
        models = same.models_cache if same else ()
        cache_at = same.models_cache_updated_at if same else None
        return Settled(model, models, cache_at, status, verdict.cause, reason)
    models = verdict.models
    if requested is None:
        model = same.model if same is not None and same.model in models else models[0]
    elif requested in models:
        model = requested
    elif lenient_model:
        model = models[0]
        reason = f"model {requested} is not offered by {provider}; using {model}"
        return Settled(model, models, now, ConfigStatus.WARNING, StatusCause.MODEL_REPLACED, reason)
    else:
        offered = ", ".join(models[:SUGGESTED_MODELS])
        more = (
            f" and {len(models) - SUGGESTED_MODELS} more" if len(models) > SUGGESTED_MODELS else ""
        )
        raise InvalidArgument(
            "model",
            f"{requested} is not offered by {provider} for this key; available: {offered}{more}",
        )
    return Settled(model, models, now, verdict.status, verdict.cause, verdict.reason)
