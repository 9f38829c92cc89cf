"""The service layer: every operation on stage configs, knowing nothing of gRPC.

It keeps an in-memory, decrypted view of every stored config (keyed by revision and
replaced on each committed change), so ``get_active`` and watchers never touch the
database or decrypt per call. Writes go through one path, ``_commit``, which stores
the change, updates the view and tells the listeners (the broadcaster) — in revision
order, because writes are serialized by ``_write_lock``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from stageconfig_contract.facts import mask_key
from stageconfig_server.admin_events import AdminEvents, ModelReplaced
from stageconfig_server.crypto import KeyCipher, fingerprint
from stageconfig_server.db.records import ConfigWrite, LogEntry, StoredConfig
from stageconfig_server.db.repository import Repository
from stageconfig_server.domain import (
    ALLOWED_PROVIDERS,
    ChangeReason,
    ConfigSource,
    ConfigStatus,
    ProviderKind,
    StageConfig,
    StageType,
    StatusCause,
)
from stageconfig_server.errors import (
    InvalidArgument,
    KeyRejected,
    NotFound,
    RevisionConflict,
)
from stageconfig_server.fallback import fallback_config
from stageconfig_server.providers.base import ProviderAdapter, ProviderCredentials, ProviderFailure
from stageconfig_server.settings import LegacySettings
from stageconfig_server.validation import (
    check_allowed,
    check_api_key,
    check_comment,
    check_model,
    check_options,
    check_revision,
)

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "stageconfig-sync"
MAX_HISTORY_PAGE = 100
DEFAULT_HISTORY_PAGE = 20
_SUGGESTED_MODELS = 5


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """A committed change, as listeners (the broadcaster) receive it."""

    revision: int
    config: StageConfig
    reason: ChangeReason


ChangeListener = Callable[[ConfigChange], None]


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    """An UpdateConfig call in domain terms."""

    stage_type: StageType
    provider_kind: ProviderKind
    api_key: str | None = None
    model: str | None = None
    options: Mapping[str, str] | None = None
    expected_revision: int | None = None
    validate_only: bool = False
    comment: str = ""

    def __repr__(self) -> str:  # the key never reaches a log through repr
        key = "<hidden>" if self.api_key is not None else None
        return (
            f"UpdateRequest(stage_type={self.stage_type}, provider_kind={self.provider_kind}, "
            f"api_key={key}, model={self.model!r}, options={self.options!r}, "
            f"expected_revision={self.expected_revision}, validate_only={self.validate_only})"
        )


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What an update stored (or, with validate_only, would store)."""

    config: StageConfig
    models: tuple[str, ...]
    written: bool


@dataclass(frozen=True, slots=True)
class ModelsView:
    """A stage's cached model list."""

    models: tuple[str, ...]
    updated_at: datetime | None
    selected_model: str
    provider_kind: ProviderKind
    status: ConfigStatus
    status_reason: str


@dataclass(frozen=True, slots=True)
class StageView:
    """What an admin sees of one stage (plaintext key: the transport masks it)."""

    stage_type: StageType
    config: StageConfig | None
    source: ConfigSource
    models: tuple[str, ...]
    allowed_providers: tuple[ProviderKind, ...]


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """What one stage's model refresh found."""

    stage_type: StageType
    status: ConfigStatus
    status_reason: str
    models: tuple[str, ...]
    selected_model: str
    replaced_model: str
    revision: int


RefreshListener = Callable[[ProviderKind, RefreshOutcome], None]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of the revision log, newest first."""

    entries: tuple[LogEntry, ...]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class _Verified:
    """The provider's verdict on a candidate config."""

    models: tuple[str, ...] | None  # None: the provider could not be asked
    status: ConfigStatus
    cause: StatusCause | None
    reason: str


@dataclass(frozen=True, slots=True)
class _Key:
    """A resolved key: plaintext for the provider, ciphertext and id for storage."""

    plaintext: str
    ciphertext: str
    key_id: int | None
    is_new: bool


class ConfigService:
    """Stage configs: read, change, verify with providers, refresh, history, rollback."""

    def __init__(
        self,
        repository: Repository,
        cipher: KeyCipher,
        adapters: Mapping[ProviderKind, ProviderAdapter],
        legacy: LegacySettings,
        *,
        events: AdminEvents,
        provider_timeout_seconds: float = 10.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._repo = repository
        self._cipher = cipher
        self._adapters = adapters
        # The legacy env is read once at start: build each stage's fallback once too, so
        # reads hand out the same object (the servicer's encoded-answer cache keys on it).
        self._fallbacks = {stage: fallback_config(legacy, stage) for stage in StageType}
        self._events = events
        self._provider_timeout = provider_timeout_seconds
        self._clock = clock or (lambda: datetime.now(UTC))
        self._view: dict[StageType, StageConfig] = {}
        self._head = 0
        self._write_lock = asyncio.Lock()
        self._listeners: list[ChangeListener] = []
        self._refresh_listeners: list[RefreshListener] = []

    # -- lifecycle and view ---------------------------------------------------------------

    async def load(self) -> None:
        """Read and decrypt every stored config into memory (at start)."""
        stored = await self._repo.list_all()
        self._view = {stage: self._decrypted(row) for stage, row in stored.items()}
        self._head = await self._repo.head_revision()

    def add_refresh_listener(self, listener: RefreshListener) -> None:
        """Call ``listener(provider, outcome)`` after every stage refresh (for metrics)."""
        self._refresh_listeners.append(listener)

    def add_listener(self, listener: ChangeListener) -> None:
        """Call ``listener`` with every committed change, in revision order."""
        self._listeners.append(listener)

    @property
    def head_revision(self) -> int:
        """The newest revision this process has applied."""
        return self._head

    @property
    def repository(self) -> Repository:
        """The repository (for the broadcaster's resume reads and for health checks)."""
        return self._repo

    def _decrypted(self, row: StoredConfig) -> StageConfig:
        return StageConfig(
            stage_type=row.stage_type,
            provider_kind=row.provider_kind,
            api_key=self._cipher.decrypt_key(row.api_key_encrypted)
            if row.api_key_encrypted
            else "",
            model=row.model,
            revision=row.revision,
            status=row.status,
            source=ConfigSource.DATABASE,
            options=dict(row.options),
            status_reason=row.status_reason,
            status_cause=row.status_cause,
            models_cache=row.models_cache,
            models_cache_updated_at=row.models_cache_updated_at,
            updated_at=row.updated_at,
            api_key_fingerprint=row.api_key_fingerprint,
        )

    def config_at(self, entry: LogEntry) -> StageConfig:
        """The decrypted config a log entry recorded (for resuming watchers)."""
        return self._decrypted(entry.state)

    async def catch_up(self) -> int:
        """Apply every change committed elsewhere (another replica) since the head, in
        order, and tell the listeners; returns how many were applied."""
        async with self._write_lock:
            return await self._catch_up_locked()

    async def _catch_up_locked(self, upto: int | None = None) -> int:
        entries = await self._repo.log_since(self._head, upto=upto)
        for entry in entries:
            self._apply(entry)
        return len(entries)

    def _apply(self, entry: LogEntry) -> ConfigChange:
        config = self._decrypted(entry.state)
        self._view[entry.stage_type] = config
        self._head = max(self._head, entry.revision)
        change = ConfigChange(entry.revision, config, entry.reason)
        for listener in self._listeners:
            try:
                listener(change)
            except Exception:  # a broken listener must not undo a committed write
                log.exception("change listener failed at revision %d", entry.revision)
        return change

    # -- reads ----------------------------------------------------------------------------

    def get_active(self, stage: StageType) -> StageConfig:
        """The stage's config with its plaintext key: stored, else the legacy fallback."""
        config = self._view.get(stage) or self._fallbacks[stage]
        if config is None:
            raise NotFound(
                f"no config is stored for stage {stage.value} and no legacy setting supplies one"
            )
        return config

    def snapshot(self, stages: Sequence[StageType]) -> tuple[int, list[StageConfig]]:
        """Every requested stage that has a config (stored or fallback), at the head."""
        configs = []
        for stage in stages:
            config = self._view.get(stage) or self._fallbacks[stage]
            if config is not None:
                configs.append(config)
        return self._head, configs

    def list_configs(self) -> list[StageView]:
        """All four stages, configured or not."""
        views = []
        for stage in StageType:
            stored = self._view.get(stage)
            config = stored or self._fallbacks[stage]
            if stored is not None:
                source = ConfigSource.DATABASE
            elif config is not None:
                source = ConfigSource.FALLBACK
            else:
                source = ConfigSource.UNCONFIGURED
            views.append(
                StageView(
                    stage_type=stage,
                    config=config,
                    source=source,
                    models=stored.models_cache if stored else (),
                    allowed_providers=ALLOWED_PROVIDERS[stage],
                )
            )
        return views

    async def list_models(self, stage: StageType, refresh: bool = False) -> ModelsView:
        """The stage's cached models; ``refresh`` asks the provider first."""
        if refresh:
            await self.refresh(stage)
        config = self._view.get(stage)
        if config is None:
            raise NotFound(f"no config is stored for stage {stage.value}: no model list is cached")
        return ModelsView(
            models=config.models_cache,
            updated_at=config.models_cache_updated_at,
            selected_model=config.model,
            provider_kind=config.provider_kind,
            status=config.status,
            status_reason=config.status_reason,
        )

    async def history(
        self, stage: StageType | None, page_size: int, page_token: str
    ) -> HistoryPage:
        """A page of the revision log, newest first."""
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(page_size or DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)
        before = _decode_page_token(page_token) if page_token else None
        entries = await self._repo.history(stage, before, size + 1)
        more = len(entries) > size
        entries = entries[:size]
        token = _encode_page_token(entries[-1].revision) if more and entries else ""
        return HistoryPage(tuple(entries), token)

    # -- writes ---------------------------------------------------------------------------

    async def update(self, request: UpdateRequest, actor: str) -> UpdateResult:
        """Validate, verify with the provider, and store a stage's config (UpdateConfig).

        Raises InvalidArgument (nothing written) for bad input or a model the provider
        does not offer, KeyRejected when the provider refuses the key, RevisionConflict
        on a stale ``expected_revision``.
        """
        stage, provider = request.stage_type, request.provider_kind
        check_allowed(stage, provider)
        if request.model is not None:
            check_model(request.model)
        if request.api_key is not None:
            check_api_key(request.api_key)
        check_comment(request.comment)
        check_revision("expected_revision", request.expected_revision)

        current = self._view.get(stage)
        self._check_expected(stage, current, request.expected_revision)
        same_provider = current is not None and current.provider_kind == provider
        if request.options:
            options = check_options(provider, request.options)
        elif same_provider and current is not None:
            options = dict(current.options)
        else:
            options = check_options(provider, {})
        key = await self._resolve_key(stage, provider, request.api_key, current)
        return await self._verify_and_commit(
            stage=stage,
            provider=provider,
            key=key,
            requested_model=request.model,
            options=options,
            current=current,
            expected_revision=request.expected_revision,
            validate_only=request.validate_only,
            actor=actor,
            reason=ChangeReason.ADMIN_UPDATE,
            comment=request.comment,
        )

    async def rollback(
        self, stage: StageType, to_revision: int, expected_revision: int | None, actor: str
    ) -> StageConfig:
        """Write a new revision restoring ``to_revision``'s provider, key, model and options,
        re-verified with the provider like any update."""
        if to_revision <= 0:
            raise InvalidArgument("to_revision", "must be a positive revision")
        check_revision("expected_revision", expected_revision)
        entry = await self._repo.log_entry(to_revision)
        if entry is None or entry.stage_type != stage:
            raise NotFound(f"revision {to_revision} is not a revision of stage {stage.value}")
        state = entry.state
        if not state.api_key_encrypted or state.api_key_id is None:
            raise NotFound(f"the key of revision {to_revision} is no longer stored")
        current = self._view.get(stage)
        self._check_expected(stage, current, expected_revision)
        key = _Key(
            plaintext=self._cipher.decrypt_key(state.api_key_encrypted),
            ciphertext=state.api_key_encrypted,
            key_id=state.api_key_id,
            is_new=False,
        )
        result = await self._verify_and_commit(
            stage=stage,
            provider=state.provider_kind,
            key=key,
            requested_model=state.model,
            options=dict(state.options),
            current=current,
            expected_revision=expected_revision,
            validate_only=False,
            actor=actor,
            reason=ChangeReason.ROLLBACK,
            comment=f"rollback to revision {to_revision}",
        )
        return result.config

    async def import_config(self, config: StageConfig, actor: str) -> StageConfig | None:
        """Store a legacy config for a stage that has none (scripts/import-env).

        Returns None when the stage already has a stored config (idempotence).
        """
        if config.stage_type in self._view:
            return None
        check_allowed(config.stage_type, config.provider_kind)
        options = check_options(config.provider_kind, config.options)
        key = _Key(check_api_key(config.api_key), "", None, True)
        try:
            result = await self._verify_and_commit(
                stage=config.stage_type,
                provider=config.provider_kind,
                key=key,
                requested_model=config.model,
                options=options,
                current=None,
                expected_revision=0,
                validate_only=False,
                actor=actor,
                reason=ChangeReason.IMPORT,
                comment="imported from the legacy env settings",
                lenient_model=True,
            )
        except RevisionConflict:
            return None
        return result.config

    def _check_expected(
        self, stage: StageType, current: StageConfig | None, expected: int | None
    ) -> None:
        # Early answer from the view; the repository checks again inside the transaction.
        actual = current.revision if current else 0
        if expected is not None and expected != actual:
            raise RevisionConflict(
                f"stage {stage.value} is at revision {actual}, not {expected}: reload and retry",
                actual,
            )

    async def _resolve_key(
        self,
        stage: StageType,
        provider: ProviderKind,
        api_key: str | None,
        current: StageConfig | None,
    ) -> _Key:
        if api_key is not None:
            return _Key(api_key, "", None, True)
        if current is not None and current.provider_kind == provider:
            stored = await self._repo.get(stage)
            if stored is not None and stored.api_key_encrypted:
                return _Key(current.api_key, stored.api_key_encrypted, stored.api_key_id, False)
        newest = await self._repo.newest_key(provider)
        if newest is None:
            raise InvalidArgument(
                "api_key", f"is required: no key for {provider.value} has been saved before"
            )
        return _Key(
            self._cipher.decrypt_key(newest.api_key_encrypted),
            newest.api_key_encrypted,
            newest.id,
            False,
        )

    async def _verify(
        self, provider: ProviderKind, api_key: str, options: Mapping[str, str]
    ) -> _Verified:
        """Ask the provider for the models this key can use, within a bound."""
        adapter = self._adapters[provider]
        try:
            # The adapter bounds its own calls; this outer bound also covers DNS and
            # anything an SDK does before its timeout applies.
            models = await asyncio.wait_for(
                adapter.list_models(ProviderCredentials(api_key, dict(options))),
                timeout=self._provider_timeout + 2.0,
            )
        except ProviderFailure as failure:
            return _Verified(None, failure.status, failure.cause, _scrub(failure.message, api_key))
        except TimeoutError:
            return _Verified(
                None,
                ConfigStatus.ERROR,
                StatusCause.NETWORK,
                f"{provider.value} did not answer within {self._provider_timeout:g} s",
            )
        if not models:
            return _Verified(
                None, ConfigStatus.ERROR, StatusCause.UPSTREAM, f"{provider.value} offers no models"
            )
        return _Verified(tuple(models), ConfigStatus.ACTIVE, None, "")

    async def _verify_and_commit(
        self,
        *,
        stage: StageType,
        provider: ProviderKind,
        key: _Key,
        requested_model: str | None,
        options: Mapping[str, str],
        current: StageConfig | None,
        expected_revision: int | None,
        validate_only: bool,
        actor: str,
        reason: ChangeReason,
        comment: str,
        lenient_model: bool = False,
    ) -> UpdateResult:
        verdict = await self._verify(provider, key.plaintext, options)
        if verdict.status is ConfigStatus.INVALID:
            raise KeyRejected(
                f"{provider.value} rejected the key: {verdict.reason}. Nothing was changed.",
                verdict.cause.value if verdict.cause else "AUTH",
            )
        same_provider = current is not None and current.provider_kind == provider
        now = self._clock()
        status, cause, status_reason = verdict.status, verdict.cause, verdict.reason
        if verdict.models is not None:
            models: tuple[str, ...] = verdict.models
            cache_at: datetime | None = now
            if requested_model is not None:
                if requested_model in models:
                    model = requested_model
                elif lenient_model:
                    model = models[0]
                    status, cause = ConfigStatus.WARNING, StatusCause.MODEL_REPLACED
                    status_reason = (
                        f"model {requested_model} is not offered by {provider.value}; using {model}"
                    )
                else:
                    offered = ", ".join(models[:_SUGGESTED_MODELS])
                    more = f" and {len(models) - _SUGGESTED_MODELS} more" if len(models) > 5 else ""
                    raise InvalidArgument(
                        "model",
                        f"{requested_model} is not offered by {provider.value} for this key; "
                        f"available: {offered}{more}",
                    )
            elif same_provider and current is not None and current.model in models:
                model = current.model
            else:
                model = models[0]
        else:
            # The provider could not be asked: keep what we knew and say so.
            models = current.models_cache if same_provider and current else ()
            cache_at = current.models_cache_updated_at if same_provider and current else None
            status_reason = f"the key could not be verified: {verdict.reason}"
            if requested_model is not None:
                model = requested_model
            elif same_provider and current is not None:
                model = current.model
            else:
                raise InvalidArgument(
                    "model",
                    f"is required: {provider.value} could not be reached to list models "
                    f"({verdict.reason})",
                )

        ciphertext = key.ciphertext or self._cipher.encrypt_key(key.plaintext)
        write = ConfigWrite(
            stage_type=stage,
            provider_kind=provider,
            api_key_encrypted=ciphertext,
            api_key_fingerprint=fingerprint(key.plaintext),
            model=model,
            models_cache=models,
            models_cache_updated_at=cache_at,
            status=status,
            status_cause=cause,
            status_reason=status_reason,
            options=dict(options),
            actor=actor,
            reason=reason,
            comment=comment,
            new_key=key.is_new,
            api_key_id=key.key_id,
        )
        if validate_only:
            preview = StageConfig(
                stage_type=stage,
                provider_kind=provider,
                api_key=key.plaintext,
                model=model,
                revision=current.revision if current else 0,
                status=status,
                source=ConfigSource.DATABASE,
                options=dict(options),
                status_reason=status_reason,
                status_cause=cause,
                models_cache=models,
                models_cache_updated_at=cache_at,
                updated_at=current.updated_at if current else None,
                api_key_fingerprint=write.api_key_fingerprint,
            )
            return UpdateResult(preview, models, written=False)
        change = await self._commit(write, expected_revision)
        return UpdateResult(change.config, models, written=True)

    async def _commit(self, write: ConfigWrite, expected_revision: int | None) -> ConfigChange:
        async with self._write_lock:
            _stored, entry = await self._repo.write_config(write, expected_revision)
            if entry.revision > self._head + 1:
                # Another replica committed in between: apply its changes first, so
                # listeners see revisions in order and none is skipped.
                await self._catch_up_locked(upto=entry.revision - 1)
            change = self._apply(entry)
        log.info(
            "stage %s now at revision %d: %s %s, status %s (%s by %s)",
            write.stage_type.value,
            entry.revision,
            write.provider_kind.value,
            write.model,
            write.status.value,
            write.reason.value,
            write.actor,
        )
        return change

    # -- model refresh (the daily sync and RefreshModels) ----------------------------------

    async def refresh(self, stage: StageType | None = None) -> list[RefreshOutcome]:
        """Refresh the model cache of one stage or of every stored stage.

        Providers are asked concurrently, so a hanging one delays nobody else (each is
        bounded by the provider timeout).
        """
        stages = [stage] if stage is not None else [s for s in StageType if s in self._view]
        if stage is not None and stage not in self._view:
            raise NotFound(f"no config is stored for stage {stage.value}: nothing to refresh")
        outcomes = list(await asyncio.gather(*(self._refresh_stage(s) for s in stages)))
        for outcome in outcomes:
            provider = self._view[outcome.stage_type].provider_kind
            for listener in self._refresh_listeners:
                listener(provider, outcome)
        return outcomes

    async def _refresh_stage(self, stage: StageType) -> RefreshOutcome:
        before = self._view[stage]
        verdict = await self._verify(before.provider_kind, before.api_key, before.options)
        # Re-read after the (slow) provider call: an admin may have changed the stage.
        current = self._view[stage]
        if current.revision != before.revision:
            return _outcome(current, "")
        replaced = ""
        models, cache_at = current.models_cache, current.models_cache_updated_at
        model = current.model
        status, cause, reason = verdict.status, verdict.cause, verdict.reason
        change_reason = ChangeReason.SYNC
        if verdict.models is not None:
            models, cache_at = verdict.models, self._clock()
            if model not in models:
                replaced, model = model, models[0]
                status, cause = ConfigStatus.WARNING, StatusCause.MODEL_REPLACED
                reason = (
                    f"model {replaced} is no longer offered by {current.provider_kind.value}; "
                    f"switched to {model}"
                )
                change_reason = ChangeReason.MODEL_REPLACED
            elif current.status is ConfigStatus.WARNING:
                # A replacement stays flagged until an admin saves the stage.
                status, cause, reason = current.status, current.status_cause, current.status_reason
        # ERROR and INVALID keep the last good cache and model (models/model untouched).
        visible_change = (
            model != current.model
            or status != current.status
            or reason != current.status_reason
            or models != current.models_cache
        )
        if not visible_change:
            # Only the cache's age moved: record it without a new revision, so a daily
            # sync that finds nothing new does not wake every worker.
            if cache_at != current.models_cache_updated_at and cache_at is not None:
                await self._touch_cache(current, cache_at)
            return _outcome(self._view[stage], "")
        stored = await self._repo.get(stage)
        if stored is None:
            return _outcome(current, "")
        write = ConfigWrite(
            stage_type=stage,
            provider_kind=current.provider_kind,
            api_key_encrypted=stored.api_key_encrypted,
            api_key_fingerprint=stored.api_key_fingerprint,
            model=model,
            models_cache=models,
            models_cache_updated_at=cache_at,
            status=status,
            status_cause=cause,
            status_reason=reason,
            options=dict(current.options),
            actor=SYSTEM_ACTOR,
            reason=change_reason,
            api_key_id=stored.api_key_id,
        )
        try:
            change = await self._commit(write, expected_revision=current.revision)
        except RevisionConflict:
            return _outcome(self._view[stage], "")
        if replaced:
            await self._events.model_replaced(
                ModelReplaced(
                    stage_type=stage,
                    provider_kind=current.provider_kind,
                    old_model=replaced,
                    new_model=model,
                    revision=change.revision,
                    at=self._clock(),
                )
            )
        return _outcome(change.config, replaced)

    async def _touch_cache(self, current: StageConfig, cache_at: datetime) -> None:
        async with self._write_lock:
            if self._view.get(current.stage_type) is not current:
                return
            touched = await self._repo.touch_models_cache(
                current.stage_type, cache_at, current.revision
            )
            if touched:
                self._view[current.stage_type] = replace(current, models_cache_updated_at=cache_at)


def _outcome(config: StageConfig, replaced: str) -> RefreshOutcome:
    return RefreshOutcome(
        stage_type=config.stage_type,
        status=config.status,
        status_reason=config.status_reason,
        models=config.models_cache,
        selected_model=config.model,
        replaced_model=replaced,
        revision=config.revision,
    )


def _scrub(message: str, api_key: str) -> str:
    """Defence in depth: a provider message must never carry the key back to a caller."""
    if api_key and api_key in message:
        return message.replace(api_key, mask_key(api_key))
    return message


def _encode_page_token(revision: int) -> str:
    return base64.urlsafe_b64encode(f"before:{revision}".encode()).decode().rstrip("=")


def _decode_page_token(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "before" or not number.isdigit():
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token", "is not a token this server issued") from exc
