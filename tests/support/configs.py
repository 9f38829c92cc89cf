"""UpdateConfig requests several test modules store the same way."""

from __future__ import annotations

from stageconfig_contract.v1 import stage_config_pb2 as pb


def poem_with_openai_fallback(gemini_key: str, openai_key: str) -> pb.UpdateConfigRequest:
    """POEM on GEMINI gemini-2.5-flash, falling back to OPENAI gpt-4o-mini."""
    return pb.UpdateConfigRequest(
        stage_type=pb.STAGE_TYPE_POEM,
        provider_kind=pb.PROVIDER_KIND_GEMINI,
        api_key=gemini_key,
        model="gemini-2.5-flash",
        fallbacks=[
            pb.RouteUpdate(
                provider_kind=pb.PROVIDER_KIND_OPENAI, api_key=openai_key, model="gpt-4o-mini"
            )
        ],
    )
