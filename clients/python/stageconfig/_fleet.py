"""The client's part in fleet truth, behind the facade: validators and refusals
(``_validation``), task outcomes (``_outcomes``), the route breakers of this process
(``_breaker``, what ``run_with_fallback`` records) and the reports that carry them to
the server (``_reporter``), wired together once per client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stageconfig._breaker import BreakerRegistry, default_registry
from stageconfig._outcomes import OutcomeLedger
from stageconfig._reporter import Reporter
from stageconfig._store import SnapshotStore
from stageconfig._surface import record_checked
from stageconfig._types import StageType
from stageconfig._validation import Gate, Validator

if TYPE_CHECKING:
    import grpc

    from stageconfig._lifecycle import Lifecycle


class Fleet:
    """Validators, outcomes and reports of one ConfigClient."""

    def __init__(
        self,
        store: SnapshotStore,
        *,
        client_id: Callable[[], str],
        channel: Callable[[], grpc.Channel],
        interval: float,
        breakers: BreakerRegistry | None = None,
    ) -> None:
        self._store = store
        self.gate = Gate()
        self.ledger = OutcomeLedger()
        self.reporter = Reporter(
            client_id=client_id,
            channel=channel,
            store=store,
            gate=self.gate,
            ledger=self.ledger,
            interval=interval,
            breakers=breakers if breakers is not None else default_registry(),
        )

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks and events; the parent's unsent outcomes and
        pending report stay the parent's."""
        self.gate.reset_after_fork()
        self.ledger.reset_after_fork()
        self.reporter.reset_after_fork()

    def add_validator(self, validator: Validator) -> Callable[[], None]:
        """See ``ConfigClient.add_validator``."""
        return self.gate.add(validator)

    @property
    def applied_revision(self) -> int:
        """The newest revision applied (``_validation``'s rule); 0 when none is held."""
        snapshot = self._store.current
        if snapshot is None:
            return 0
        return self.gate.applied_revision(snapshot.revision, snapshot.configs)

    def record_outcome(
        self,
        stage: StageType | str,
        ok: bool,
        *,
        cause: str | None,
        duration_seconds: float | None,
        retried: bool,
        revision: int | None,
    ) -> None:
        """See ``ConfigClient.record_outcome``."""
        snapshot = self._store.current
        record_checked(
            self.ledger,
            stage,
            ok,
            stages=self._store.stages,
            configs=snapshot.configs if snapshot is not None else None,
            verb="watch",
            cause=cause,
            duration_seconds=duration_seconds,
            retried=retried,
            revision=revision,
        )


class FleetMethods:
    """ConfigClient's public methods of fleet truth (a part of the facade kept here so
    ``_client`` stays one sitting long)."""

    _fleet: Fleet
    _lifecycle: Lifecycle

    @property
    def applied_revision(self) -> int:
        """The newest revision this client applied (0: none held): the revision its
        config is current at — held back below a revision it refused until a newer
        revision of that stage applies (``add_validator``). ``snapshot().revision`` is
        how far the stream has gone, refused revisions included."""
        return self._fleet.applied_revision

    @property
    def outcomes_dropped(self) -> int:
        """Task outcomes recorded here but never reported (over the bound while the server
        was away, or in a report the server refused)."""
        return self._fleet.ledger.dropped

    @property
    def reports_sent(self) -> int:
        """Status reports the server acknowledged from this process."""
        return self._fleet.reporter.sent

    def add_validator(self, validator: Validator) -> Callable[[], None]:
        """Run ``validator(config)`` on every new config of a stage before it is applied
        (on the watch thread, in order; keep it quick); returns a function removing it.

        Raising refuses the config: the stage keeps its previous config, the other
        stages apply, the server gets a NACK with the exception's message (keys masked,
        at most 512 characters), and the stage's next revision is validated afresh.
        """
        return self._fleet.add_validator(validator)

    def record_outcome(
        self,
        stage: StageType | str,
        ok: bool,
        cause: str | None = None,
        duration_seconds: float | None = None,
        *,
        retried: bool = False,
        revision: int | None = None,
    ) -> None:
        """Count one task run with ``stage``'s config (thread-safe, no network).

        ``ok``: it succeeded; else it failed because of ``cause`` (one word, e.g. an
        exception class; 32 distinct causes of ≤ 64 characters per revision, the rest
        count as ``other``); ``retried``: it failed and will be retried. The task counts
        for ``revision`` (default: the stage's config in use now).
        """
        self._lifecycle.ensure_process()
        self._fleet.record_outcome(
            stage,
            ok,
            cause=cause,
            duration_seconds=duration_seconds,
            retried=retried,
            revision=revision,
        )
