"""Celery integration: one ConfigClient per worker process, started without blocking.

::

    from celery import Celery
    from stageconfig import StageType
    from stageconfig.contrib.celery import current_config, setup_stageconfig

    app = Celery("pipeline", broker="redis://localhost:6379/0")
    setup_stageconfig(
        app,
        target="config.internal:50051",
        token=os.environ["STAGECONFIG_TOKEN"],
        cache_path="/var/lib/pipeline/stageconfig.json",  # needs STAGECONFIG_CACHE_KEY
    )

    @app.task
    def write_poem(topic: str) -> str:
        config = current_config(StageType.POEM)   # from memory, always the newest
        ...

Where the client starts, per pool:

- prefork (the default): in every child, on ``worker_process_init`` — after the fork,
  so the parent never holds a grpc object — and it is closed on
  ``worker_process_shutdown``. Starting only spawns the client's threads, so the child
  reports ready within Celery's process-start timeout even while the server is down.
- solo and threads: nothing forks after start-up, so the client starts in the worker
  process on ``worker_init`` and closes on ``worker_shutdown`` (Celery 5.7's solo pool
  also sends ``worker_process_init``; starting twice is a no-op).
- anywhere else (a script, a test, eager tasks): ``current_config`` starts it lazily.

Every task is recorded for the client's status reports, in whatever pool: the stages it
read through ``current_config`` (and the revision it read of each), whether it succeeded,
failed (the cause is the exception's class name) or was retried, and how long it ran
(``task_prerun`` / ``task_failure`` / ``task_postrun``, which run in the process that
runs the task — a prefork child too). A task that read no config is not attributed to
any stage. Pass ``record_tasks=False`` to record outcomes yourself
(``current_client().record_outcome``).

**One stream per host** (``per_host=True``): instead of a ConfigClient per process,
the worker's parent starts the host's ``stageconfig-agent`` (a separate process, spawned
— not forked — from the ``stageconfig-agent`` command) or attaches to the one already
running for the same user and targets (another worker instance's), and keeps one alive
(a watchdog thread in the parent restarts it when it dies). Every process attaches to
it after the fork (``stageconfig.attach``: shared memory, no grpc, no thread); neither
the parent nor the children import grpc. ``cache_path``, ``token``, ``tls`` and
``timing`` go to the agent. See docs/celery.md for when to choose it (it is not the
default).

The Celery package is required (``pip install stageconfig[celery]``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import Celery, signals

from stageconfig._options import TimingOptions
from stageconfig._types import StageConfig, StageType
from stageconfig.errors import NotReadyError, StageConfigError
from stageconfig.tls import TlsConfig

if TYPE_CHECKING:
    from stageconfig._attached import AttachedClient
    from stageconfig._client import ConfigClient
    from stageconfig.agent.launcher import AgentSupervisor

log = logging.getLogger("stageconfig.celery")

DEFAULT_READY_TIMEOUT_SECONDS = 10.0
_UID = "stageconfig.contrib.celery."


@dataclass
class _Setup:
    app: Celery
    target: str | Sequence[str]
    ready_timeout: float
    options: dict[str, Any] = field(default_factory=dict)
    per_host: bool = False


@dataclass
class _TaskRecord:
    """What one running task read and how it ended (for its outcome)."""

    task_id: str
    started: float
    revisions: dict[StageType, int] = field(default_factory=dict)
    """Each stage the task read, with the revision it read first."""
    cause: str | None = None


class _Running(threading.local):
    """The tasks running on this thread, innermost last (an eager task may run another)."""

    def __init__(self) -> None:
        self.stack: list[_TaskRecord] = []


_setup: _Setup | None = None
_client: ConfigClient | AttachedClient | None = None
_supervisor: AgentSupervisor | None = None
_lock = threading.Lock()
_running = _Running()


def _new_lock_in_child() -> None:
    # Another thread may have held the lock at fork time; the child gets a fresh one.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def setup_stageconfig(
    app: Celery,
    *,
    target: str | Sequence[str],
    token: str | None = None,
    stages: Iterable[StageType | str] | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    tls: TlsConfig | None = None,
    timing: TimingOptions | None = None,
    ready_timeout: float = DEFAULT_READY_TIMEOUT_SECONDS,
    record_tasks: bool = True,
    per_host: bool = False,
    **client_options: Any,
) -> None:
    """Give every worker process of ``app`` a ConfigClient of ``target`` (one server,
    or several replicas to fail over between).

    Returns at once and creates nothing yet: the client starts in the worker process
    (see the module docstring for where, per pool). ``ready_timeout`` bounds how long
    ``current_config`` waits for the first config when the process has none yet;
    ``record_tasks`` records every task's outcome for the status reports; ``tls`` (a
    ``TlsConfig``), ``timing`` (``TimingOptions``: ``report_interval_seconds`` too) and
    ``client_options`` (``cache_key``, ``client_id``, ``channel_options``) go to
    ConfigClient.

    ``per_host=True``: one ``stageconfig-agent`` per host holds the stream and every
    worker process reads its config from shared memory (module docstring); the
    options then go to the agent (``client_id`` and ``channel_options`` do not apply:
    each process reports as ``hostname/pid``).
    """
    global _setup
    options: dict[str, Any] = {
        "token": token,
        "stages": list(stages) if stages is not None else None,
        "cache_path": cache_path,
        "tls": tls,
        "timing": timing,
        **client_options,
    }
    _setup = _Setup(
        app=app, target=target, ready_timeout=ready_timeout, options=options, per_host=per_host
    )
    # weak=False: the receivers are module functions; dispatch_uid: calling setup twice
    # (a reloaded module) does not connect them twice.
    signals.worker_process_init.connect(
        _on_worker_process_init, weak=False, dispatch_uid=_UID + "process_init"
    )
    signals.worker_process_shutdown.connect(
        _on_worker_process_shutdown, weak=False, dispatch_uid=_UID + "process_shutdown"
    )
    signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid=_UID + "worker_init")
    signals.worker_shutdown.connect(
        _on_worker_shutdown, weak=False, dispatch_uid=_UID + "worker_shutdown"
    )
    task_signals = (
        (signals.task_prerun, _on_task_prerun),
        (signals.task_failure, _on_task_failure),
        (signals.task_postrun, _on_task_postrun),
    )
    for signal, receiver in task_signals:
        uid = f"{_UID}{receiver.__name__}"
        if record_tasks:
            signal.connect(receiver, weak=False, dispatch_uid=uid)
        else:
            signal.disconnect(receiver, dispatch_uid=uid)


def current_client() -> ConfigClient | AttachedClient:
    """This process's client, started (created now if no signal did it yet): a
    ConfigClient, or with ``per_host`` an AttachedClient of the host's agent."""
    global _client
    client = _client
    if client is not None:
        return client
    setup = _setup
    if setup is None:
        raise StageConfigError("setup_stageconfig(app, target=…) was not called")
    with _lock:
        if _client is None:
            if setup.per_host:
                _client = _attach(setup)
            else:
                from stageconfig._client import ConfigClient

                _client = ConfigClient(setup.target, **setup.options)
                _client.start()
            log.info("stageconfig client of %s started in process %d", setup.target, os.getpid())
        return _client


def _targets(setup: _Setup) -> list[str]:
    names = setup.target.split(",") if isinstance(setup.target, str) else setup.target
    return [t.strip() for t in names if t.strip()]


def _attach(setup: _Setup) -> AttachedClient:
    """Attach to the host's agent (started first when this process supervises none:
    a script, a test, eager tasks)."""
    from stageconfig._attached import AttachedClient

    if _supervisor is None and not _forked_from_supervisor():
        start_agent()
    timing = setup.options.get("timing") or TimingOptions()
    return AttachedClient(
        _targets(setup),
        stages=setup.options.get("stages"),
        report_interval_seconds=timing.report_interval_seconds,
    ).start()


_supervisor_pid = 0


def _forked_from_supervisor() -> bool:
    """In a pool child: the parent supervises the agent (this process inherited the
    object, not its watchdog thread)."""
    return _supervisor_pid != 0 and _supervisor_pid != os.getpid()


def start_agent() -> AgentSupervisor:
    """Start (or attach to) the host's agent and its watchdog in this process."""
    global _supervisor, _supervisor_pid
    from stageconfig.agent.launcher import AgentSupervisor, agent_command, agent_env

    setup = _setup
    if setup is None:
        raise StageConfigError("setup_stageconfig(app, target=…) was not called")
    if _supervisor is not None and not _forked_from_supervisor():
        return _supervisor
    o = setup.options
    targets = _targets(setup)
    command = agent_command(
        targets,
        cache_path=o.get("cache_path"),
        timing=o.get("timing"),
        tls=o.get("tls") is not None,
    )
    env = agent_env(
        token=o.get("token"),
        cache_key=o.get("cache_key") or os.environ.get("STAGECONFIG_CACHE_KEY"),
        tls=o.get("tls"),
    )
    _supervisor = AgentSupervisor(targets, command, env).start()
    _supervisor_pid = os.getpid()
    return _supervisor


def stop_agent() -> None:
    """Stop the watchdog and the agent this process started (worker shutdown)."""
    global _supervisor
    supervisor, _supervisor = _supervisor, None
    if supervisor is not None and not _forked_from_supervisor():
        supervisor.stop()


def current_config(stage: StageType | str, timeout: float | None = None) -> StageConfig:
    """The stage's config, from this process's client's memory.

    Only a process that holds no config yet (just started, server not answered, no
    last-known-good file) waits, at most ``timeout`` (default: setup's
    ``ready_timeout``); then NotReadyError. StageNotConfiguredError when the stage has
    no config.
    """
    client = current_client()
    try:
        config = client.get(stage)
    except NotReadyError:
        setup = _setup
        default = setup.ready_timeout if setup is not None else DEFAULT_READY_TIMEOUT_SECONDS
        client.wait_ready(default if timeout is None else timeout)
        config = client.get(stage)
    stack = _running.stack
    if stack:  # inside a task: its outcome counts for this stage at this revision
        stack[-1].revisions.setdefault(config.stage_type, config.revision)
    return config


def close_client() -> None:
    """Close this process's client (the signals do it at worker shutdown)."""
    global _client
    with _lock:
        client, _client = _client, None
    if client is not None:
        client.close()


# -- signal receivers -------------------------------------------------------------------


def _on_worker_process_init(**_: Any) -> None:
    current_client()


def _on_worker_process_shutdown(**_: Any) -> None:
    close_client()


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    setup = _setup
    if setup is None or getattr(sender, "app", setup.app) is not setup.app:
        return
    if setup.per_host:
        start_agent()  # in the parent, before the pool forks: children only attach
    if _forks_children(sender):
        return  # prefork: each child starts its own after the fork
    current_client()


def _on_worker_shutdown(**_: Any) -> None:
    close_client()
    stop_agent()


def _on_task_prerun(task_id: str | None = None, **_: Any) -> None:
    _running.stack.append(_TaskRecord(task_id or "", time.monotonic()))


def _on_task_failure(
    task_id: str | None = None, exception: BaseException | None = None, **_: Any
) -> None:
    for record in reversed(_running.stack):
        if record.task_id == (task_id or ""):
            record.cause = _cause(exception)
            return


def _cause(exception: BaseException | None) -> str | None:
    """The exception's class name — the original one when Celery wrapped an exception it
    cannot pickle (``UnpickleableExceptionWrapper.exc_cls_name``)."""
    if exception is None:
        return None
    wrapped = getattr(exception, "exc_cls_name", None)
    return wrapped if isinstance(wrapped, str) and wrapped else type(exception).__name__


def _on_task_postrun(task_id: str | None = None, state: str | None = None, **_: Any) -> None:
    stack = _running.stack
    for index in range(len(stack) - 1, -1, -1):
        if stack[index].task_id == (task_id or ""):
            record = stack.pop(index)
            break
    else:
        return
    client = _client
    if client is None or not record.revisions:
        return
    duration = time.monotonic() - record.started
    for stage, revision in record.revisions.items():
        try:
            client.record_outcome(
                stage,
                state == "SUCCESS",
                record.cause or state,
                duration,
                retried=state == "RETRY",
                revision=revision,
            )
        except StageConfigError:  # the client was closed meanwhile: nothing to report to
            return


def _forks_children(worker: Any) -> bool:
    """Whether the worker's pool forks processes (prefork) after worker_init."""
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool as PreforkPool

    pool_cls = getattr(worker, "pool_cls", None)
    if pool_cls is None:
        return True  # unknown: the safe choice is to leave it to the children
    resolved = get_implementation(pool_cls)
    return isinstance(resolved, type) and issubclass(resolved, PreforkPool)


__all__ = ["close_client", "current_client", "current_config", "setup_stageconfig"]
