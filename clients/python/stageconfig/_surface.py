"""What ConfigClient and AttachedClient share whatever their source of configs: the
context manager over ``start()`` / ``close()``, the refusal of a stage the client does
not serve, and the checks ``record_outcome`` makes before counting. Imports no grpc:
``import stageconfig.attach`` must stay free of it."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Self

from stageconfig._outcomes import OutcomeLedger
from stageconfig._types import StageConfig, StageType
from stageconfig.errors import StageNotConfiguredError


class ClientSurface:
    """``with client:`` starts it and closes it (subclasses define both)."""

    def start(self) -> Self:
        """Start the client (defined by each client)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the client (defined by each client)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def unserved_stage(
    stage: StageType, stages: Collection[StageType], verb: str
) -> StageNotConfiguredError:
    """The error for a ``get`` of a stage the client does not ``verb`` (watch / use)."""
    served = ", ".join(sorted(stages))
    return StageNotConfiguredError(
        stage, f"this client does not {verb} stage {stage} (it {verb}s {served})"
    )


def record_checked(
    ledger: OutcomeLedger,
    stage: StageType | str,
    ok: bool,
    *,
    stages: Collection[StageType],
    configs: Mapping[StageType, StageConfig] | None,
    verb: str,
    cause: str | None,
    duration_seconds: float | None,
    retried: bool,
    revision: int | None,
) -> None:
    """``record_outcome`` of either client: the stage must be one it serves (``verb``:
    watch / use); the revision defaults to that of the stage's config in ``configs``."""
    if type(stage) is not StageType:
        stage = StageType(stage)
    if stage not in stages:
        raise StageNotConfiguredError(stage, f"this client does not {verb} stage {stage}")
    if revision is None:
        config = configs.get(stage) if configs is not None else None
        revision = config.revision if config is not None else 0
    elif revision < 0:
        raise ValueError("revision must be >= 0")
    ledger.record(
        stage,
        revision,
        ok=bool(ok),
        retried=retried,
        cause=cause,
        duration_seconds=duration_seconds,
    )
