"""A server newer than this client: a real grpc server on port 0 whose answers carry
enum values the client has never heard of (99, ``NEWER``).

Every enum field of every answer is 99, except where a known value is needed to reach
what lies behind it: one stage per list keeps a known stage (so a stage with an unknown
provider kind, status, source or cause can be shown), VOICE keeps its known provider (so
a config with an unknown status can be shown), and some lists mix known values among
the unknown ones. It answers the admin RPCs from fixed data and checks no token.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

from stageconfig_contract.v1 import stage_config_pb2 as pb
from stageconfig_contract.v1 import stage_config_pb2_grpc as pbg

NEWER = 99
"""An enum number no client in this repository knows."""

VOICE_KEY = "AQVN-plaintext-key-from-tomorrow-7777"
"""VOICE's key, sent in plaintext (as a server without tokens does): the admin tools must
still show it masked."""


def _config(stage: int, provider: int, revision: int, **fields: Any) -> pb.StageConfig:
    return pb.StageConfig(
        stage_type=stage,
        provider_kind=provider,
        model="model-of-tomorrow",
        revision=revision,
        status=NEWER,
        source=NEWER,
        status_cause=NEWER,
        status_reason="a status of tomorrow",
        **fields,
    )


UNKNOWN_STAGE = _config(NEWER, NEWER, 9, api_key="…", api_key_masked=True)
POEM_UNKNOWN_PROVIDER = _config(pb.STAGE_TYPE_POEM, NEWER, 7, api_key="…", api_key_masked=True)
VOICE_UNKNOWN_STATUS = _config(
    pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT, 8, api_key=VOICE_KEY
)

VOICE_ROLLOUT = pb.Rollout(
    stage_type=pb.STAGE_TYPE_VOICE,
    state=NEWER,
    candidate=_config(pb.STAGE_TYPE_VOICE, pb.PROVIDER_KIND_SPEECHKIT, 9, api_key=VOICE_KEY),
    candidate_revision=9,
    stable_revision=8,
    percent=25,
    canary=pb.RolloutSide(revision=9, clients=1),
    stable=pb.RolloutSide(revision=8, clients=3),
)
"""A rollout in a state of tomorrow whose candidate's key comes in plaintext."""


def _history(revision: int, stage: int) -> pb.HistoryEntry:
    entry = pb.HistoryEntry(revision=revision, stage_type=stage, actor="tomorrow", reason=NEWER)
    entry.changes.add(field="model", old_value="model-of-today", new_value="model-of-tomorrow")
    entry.time.GetCurrentTime()
    return entry


class NewerServicer(pbg.StageConfigServiceServicer):
    """The admin RPCs of a server from the future."""

    def ListConfigs(self, request: pb.ListConfigsRequest, context: Any) -> pb.ListConfigsResponse:
        poem = pb.PROVIDER_KIND_YANDEX_GPT, pb.PROVIDER_KIND_GEMINI, pb.PROVIDER_KIND_OPENAI
        return pb.ListConfigsResponse(
            stages=[
                pb.StageConfigView(
                    stage_type=NEWER,
                    config=UNKNOWN_STAGE,
                    models=["model-of-tomorrow"],
                    allowed_providers=[NEWER],
                ),
                pb.StageConfigView(
                    stage_type=pb.STAGE_TYPE_POEM,
                    config=POEM_UNKNOWN_PROVIDER,
                    allowed_providers=[NEWER, *poem],
                ),
                pb.StageConfigView(
                    stage_type=pb.STAGE_TYPE_VOICE,
                    config=VOICE_UNKNOWN_STATUS,
                    models=["model-of-tomorrow"],
                    allowed_providers=[pb.PROVIDER_KIND_SPEECHKIT, NEWER],
                    rollout=VOICE_ROLLOUT,
                ),
                # Nothing stored, and no provider this client could choose.
                pb.StageConfigView(stage_type=pb.STAGE_TYPE_SONG, allowed_providers=[NEWER]),
            ],
            head_revision=9,
        )

    def ListModels(self, request: pb.ListModelsRequest, context: Any) -> pb.ListModelsResponse:
        answer = pb.ListModelsResponse(
            models=["model-of-tomorrow"],
            selected_model="model-of-tomorrow",
            provider_kind=NEWER,
            status=NEWER,
            status_reason="a status of tomorrow",
        )
        answer.updated_at.GetCurrentTime()
        return answer

    def GetConfigHistory(
        self, request: pb.GetConfigHistoryRequest, context: Any
    ) -> pb.GetConfigHistoryResponse:
        # The first page holds only an entry of an unknown stage: the client must still
        # follow the token to the second.
        if not request.page_token:
            return pb.GetConfigHistoryResponse(
                entries=[_history(9, NEWER)], next_page_token="page-2"
            )
        return pb.GetConfigHistoryResponse(
            entries=[_history(8, pb.STAGE_TYPE_VOICE), _history(7, pb.STAGE_TYPE_POEM)]
        )

    def ListWatchers(
        self, request: pb.ListWatchersRequest, context: Any
    ) -> pb.ListWatchersResponse:
        watcher = pb.WatcherInfo(
            client_id="worker-of-tomorrow",
            peer="ipv4:127.0.0.1:1",
            actor="worker",
            stage_types=[NEWER, pb.STAGE_TYPE_POEM],
            last_revision=9,
        )
        watcher.connected_since.GetCurrentTime()
        return pb.ListWatchersResponse(watchers=[watcher], head_revision=9)

    def RefreshModels(
        self, request: pb.RefreshModelsRequest, context: Any
    ) -> pb.RefreshModelsResponse:
        results = [
            pb.RefreshResult(stage_type=stage, status=NEWER, selected_model="m", revision=9)
            for stage in (NEWER, pb.STAGE_TYPE_POEM)
        ]
        return pb.RefreshModelsResponse(results=results)

    def UpdateConfig(
        self, request: pb.UpdateConfigRequest, context: Any
    ) -> pb.UpdateConfigResponse:
        config = _config(request.stage_type, request.provider_kind, 10, api_key=VOICE_KEY)
        return pb.UpdateConfigResponse(config=config, models=["model-of-tomorrow"], written=True)

    def WatchConfig(
        self, request: pb.WatchConfigRequest, context: Any
    ) -> Iterator[pb.WatchConfigResponse]:
        configs = [UNKNOWN_STAGE, POEM_UNKNOWN_PROVIDER, VOICE_UNKNOWN_STATUS]
        yield pb.WatchConfigResponse(snapshot=pb.Snapshot(revision=9, configs=configs))
        for revision, config in enumerate(configs, start=10):
            change = pb.Change(revision=revision, config=config, reason=NEWER)
            yield pb.WatchConfigResponse(change=change)
        yield pb.WatchConfigResponse(heartbeat=pb.Heartbeat(head_revision=12))
        # Then the stream ends normally, as a draining server's does.


class NewerServer:
    """``NewerServicer`` served on 127.0.0.1, port 0; ``with`` stops it."""

    def __init__(self) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pbg.add_StageConfigServiceServicer_to_server(NewerServicer(), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{port}"

    def __enter__(self) -> NewerServer:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop(grace=None).wait(10)
