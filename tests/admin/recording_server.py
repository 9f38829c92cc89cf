"""A server that keeps every UpdateConfigRequest it receives: a real grpc server on port 0
for what the real server does not act on yet (``allow_unverified``), so a test can check
what the admin tools send.

It answers ListConfigs with POEM stored (GEMINI, revision 3, two models fetched two hours
ago), VOICE stored with a model but no model list fetched yet (revision 2), SONG and CLIP
unconfigured; and every UpdateConfig by storing nothing and echoing the request back as
written at the next revision. It checks no token, like a development server.
"""

from __future__ import annotations

import threading
from concurrent import futures
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from stageconfig_contract.facts import mask_key
from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg

POEM_REVISION = 3


def _poem() -> pb.StageConfig:
    config = pb.StageConfig(
        stage_type=pb.STAGE_TYPE_POEM,
        provider_kind=pb.PROVIDER_KIND_GEMINI,
        api_key="AIza-…0001",
        api_key_masked=True,
        model="gemini-2.5-flash",
        revision=POEM_REVISION,
        status=pb.CONFIG_STATUS_ACTIVE,
        source=pb.CONFIG_SOURCE_DATABASE,
    )
    config.models_cache_updated_at.FromDatetime(datetime.now(UTC) - timedelta(hours=2, minutes=5))
    return config


def _voice() -> pb.StageConfig:
    return pb.StageConfig(
        stage_type=pb.STAGE_TYPE_VOICE,
        provider_kind=pb.PROVIDER_KIND_SPEECHKIT,
        api_key="AQVN-…0005",
        api_key_masked=True,
        model="alena",
        revision=2,
        status=pb.CONFIG_STATUS_ACTIVE,
        source=pb.CONFIG_SOURCE_DATABASE,
    )


class RecordingServicer(pbg.StageConfigServiceServicer):
    """ListConfigs from fixed data; UpdateConfig recorded and echoed."""

    def __init__(self) -> None:
        self.updates: list[pb.UpdateConfigRequest] = []
        self._lock = threading.Lock()

    def ListConfigs(self, request: pb.ListConfigsRequest, context: Any) -> pb.ListConfigsResponse:
        poem = pb.PROVIDER_KIND_YANDEX_GPT, pb.PROVIDER_KIND_GEMINI, pb.PROVIDER_KIND_OPENAI
        return pb.ListConfigsResponse(
            stages=[
                pb.StageConfigView(
                    stage_type=pb.STAGE_TYPE_POEM,
                    config=_poem(),
                    models=["gemini-2.5-flash", "gemini-2.5-pro"],
                    allowed_providers=poem,
                ),
                pb.StageConfigView(
                    stage_type=pb.STAGE_TYPE_VOICE,
                    config=_voice(),
                    allowed_providers=[pb.PROVIDER_KIND_SPEECHKIT],
                ),
                pb.StageConfigView(
                    stage_type=pb.STAGE_TYPE_SONG, allowed_providers=[pb.PROVIDER_KIND_SUNO]
                ),
                pb.StageConfigView(
                    stage_type=pb.STAGE_TYPE_CLIP, allowed_providers=[pb.PROVIDER_KIND_PIKA]
                ),
            ],
            head_revision=POEM_REVISION,
        )

    def UpdateConfig(
        self, request: pb.UpdateConfigRequest, context: Any
    ) -> pb.UpdateConfigResponse:
        with self._lock:
            self.updates.append(request)
        config = pb.StageConfig(
            stage_type=request.stage_type,
            provider_kind=request.provider_kind,
            api_key=mask_key(request.api_key) if request.HasField("api_key") else "AIza-…0001",
            api_key_masked=True,
            model=request.model or "gemini-2.5-flash",
            revision=POEM_REVISION + 1,
            status=pb.CONFIG_STATUS_ACTIVE,
            source=pb.CONFIG_SOURCE_DATABASE,
        )
        return pb.UpdateConfigResponse(config=config, models=[config.model], written=True)


class RecordingServer:
    """``RecordingServicer`` served on 127.0.0.1, port 0; ``with`` stops it."""

    def __init__(self) -> None:
        self.servicer = RecordingServicer()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pbg.add_StageConfigServiceServicer_to_server(self.servicer, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{port}"

    @property
    def updates(self) -> list[pb.UpdateConfigRequest]:
        """Every UpdateConfigRequest received so far, oldest first."""
        return list(self.servicer.updates)

    def __enter__(self) -> RecordingServer:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop(grace=None).wait(10)
