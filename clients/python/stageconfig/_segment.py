"""The shared-memory segment a host's ``stageconfig-agent`` publishes snapshots in, and
every attached worker process reads (``_attached``). Neither side imports grpc.

Where: a regular file in a RAM-backed tmpfs (``/dev/shm``; ``STAGECONFIG_AGENT_DIR``
overrides), named from the user id and the targets (``segment_paths``), mode 0600 and
owned by the user: a snapshot (plaintext keys) never reaches a disk and no other user
can open it. Next to it: ``<name>.lock`` (the agent's ``flock``: one agent per segment;
it holds the agent's pid) and ``<name>.sock`` (the agent's datagram socket for the
workers' status reports, ``_attached_reports``). docs/security.md says why a file on
tmpfs and not a memfd.

Layout (little-endian; the header is one page)::

    0   magic  b"SCFGSHM\\0"
    8   u32 layout version (1)        12  u32 slot capacity (bytes, each of 2 slots)
    16  u64 generation                 (0: nothing published; slot = generation % 2)
    24  u64 heartbeat (CLOCK_MONOTONIC ns, shared by every process of the host)
    32  u32 agent pid   36 u8 agent state (``AGENT_STATES``)
    40  u32 stale-after (ms)   44 u32 heartbeat period (ms)
    64  u32 note generation   68 u16 note length   72 the agent's note (utf-8, ≤ 440 B)
    4096 + i * capacity: slot i = u32 length, u32 crc32, u64 generation, payload

**No torn read, no blocked writer.** The writer puts generation g + 1 into the slot the
readers are not told about (slot (g + 1) % 2), payload first, then the slot's header,
and only then stores the generation (one aligned 8-byte store). A reader takes the
generation, copies the slot it names, checks that the slot carries that generation and
that the generation has not moved meanwhile, and checks the CRC; on any mismatch it
copies again. To overwrite the slot a reader copies, the writer has to publish twice —
the generation moves, the reader notices. The CRC makes the check independent of how
the CPU orders the stores. Readers never write; the writer never waits for them.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import stat
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"SCFGSHM\0"
LAYOUT_VERSION = 1
HEADER_SIZE = 4096
SLOT_HEADER = struct.Struct("<IIQ")
DEFAULT_SLOT_CAPACITY = 1 << 20
"""1 MiB per slot: a snapshot of four stages is a few KiB; tmpfs only holds the pages
that are written."""
NOTE_MAX = 440

_GEN_WORD, _HEARTBEAT_WORD = 2, 3
_AGENT = struct.Struct("<IB")  # at 32
_TIMING = struct.Struct("<II")  # at 40
_NOTE_HEAD = struct.Struct("<IH")  # at 64
_READ_ATTEMPTS = 1000

AGENT_STATES = ("CONNECTING", "READY", "STALE", "FATAL", "CLOSED")
"""The agent's own ConfigClient state, by its index in the header."""


class SegmentError(OSError):
    """A segment that cannot be used: missing, not ours, too open, or not a segment."""


@dataclass(frozen=True, slots=True)
class SegmentPaths:
    """The agent's files for one set of targets."""

    segment: Path
    lock: Path
    socket: Path


def agent_dir() -> Path:
    """Where segments live: ``STAGECONFIG_AGENT_DIR``, else /dev/shm (tmpfs), else the
    user's runtime dir (tmpfs on systemd hosts). Never a disk directory by default:
    the segment holds plaintext keys."""
    configured = os.environ.get("STAGECONFIG_AGENT_DIR")
    if configured:
        return Path(configured)
    # A shared tmpfs: safe because every file is opened O_NOFOLLOW and refused unless
    # it is ours and closed to others (``_check_owned``).
    shm = Path("/dev/shm")  # noqa: S108
    if shm.is_dir():
        return shm
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime)
    raise SegmentError(
        "no RAM-backed directory for the agent's segment (/dev/shm or XDG_RUNTIME_DIR); "
        "set STAGECONFIG_AGENT_DIR to a tmpfs directory"
    )


def segment_paths(targets: str | Sequence[str], directory: Path | None = None) -> SegmentPaths:
    """The files of the agent of ``targets`` for this user: the name is the uid and a
    digest of the targets, so every worker of a host that watches the same servers
    finds the same agent."""
    names = targets.split(",") if isinstance(targets, str) else list(targets)
    joined = ",".join(t.strip() for t in names if t.strip())
    if not joined:
        raise ValueError("target is required (host:port of the stageconfig server)")
    data = joined.encode()
    # A name, not a secret: two CRCs make 64 bits without hashlib, whose OpenSSL costs
    # an attached process 3.6 MB of RSS (ownership and mode are the protection).
    digest = f"{zlib.crc32(data):08x}{zlib.crc32(data[::-1], 0x9E3779B9):08x}"
    base = (directory or agent_dir()) / f"stageconfig-{os.geteuid()}-{digest}"
    return SegmentPaths(
        base, base.with_name(base.name + ".lock"), base.with_name(base.name + ".sock")
    )


def _check_owned(fd: int, path: Path) -> os.stat_result:
    """Refuse a file another user made (a squatter in a shared tmpfs could feed configs)
    or one others may write."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise SegmentError(f"{path} is not a regular file")
    if info.st_uid != os.geteuid():
        raise SegmentError(f"{path} belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & 0o022:
        raise SegmentError(f"{path} is writable by others (mode {info.st_mode & 0o777:o})")
    return info


class SegmentWriter:
    """The agent's side: creates (or reopens, after a restart) the segment and
    publishes payloads. One writer per segment (the agent holds the lock)."""

    def __init__(self, path: Path, slot_capacity: int = DEFAULT_SLOT_CAPACITY) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            info = _check_owned(fd, path)
            os.fchmod(fd, 0o600)
            size = HEADER_SIZE + 2 * slot_capacity
            reuse = info.st_size >= HEADER_SIZE and os.pread(fd, 8, 0) == MAGIC
            if reuse:
                slot_capacity = struct.unpack("<I", os.pread(fd, 4, 12))[0]
                size = HEADER_SIZE + 2 * slot_capacity
            if info.st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.capacity = slot_capacity
        self._words = memoryview(self._map)[:64].cast("Q")
        if not reuse:
            self._map[0:8] = MAGIC
            struct.pack_into("<II", self._map, 8, LAYOUT_VERSION, slot_capacity)
        self._note_gen = _NOTE_HEAD.unpack_from(self._map, 64)[0]

    @property
    def generation(self) -> int:
        """The generation published last (kept across agent restarts)."""
        return int(self._words[_GEN_WORD])

    def publish(self, payload: bytes) -> int:
        """Publish ``payload`` as the next generation; returns it. Never waits."""
        if len(payload) > self.capacity - SLOT_HEADER.size:
            raise SegmentError(
                f"a snapshot of {len(payload)} bytes does not fit the segment's slots "
                f"({self.capacity} bytes); restart the agent with a larger --slot-bytes"
            )
        generation = self.generation + 1
        offset = HEADER_SIZE + (generation % 2) * self.capacity
        start = offset + SLOT_HEADER.size
        self._map[start : start + len(payload)] = payload
        SLOT_HEADER.pack_into(self._map, offset, len(payload), zlib.crc32(payload), generation)
        self._words[_GEN_WORD] = generation
        return generation

    def beat(self, state: str, pid: int, stale_after: float, period: float) -> None:
        """The agent is alive (now), in ``state``; readers call it gone after
        ``stale_after`` seconds without a beat."""
        _AGENT.pack_into(self._map, 32, pid, AGENT_STATES.index(state))
        _TIMING.pack_into(self._map, 40, int(stale_after * 1000), int(period * 1000))
        self._words[_HEARTBEAT_WORD] = time.monotonic_ns()

    def note(self, text: str) -> None:
        """The agent's last error, for readers' messages (never a key: the agent's
        errors are its ConfigClient's, which carry none)."""
        data = text.encode("utf-8", "replace")[:NOTE_MAX]
        self._note_gen += 1 + (self._note_gen & 1)  # odd while writing, even when done
        _NOTE_HEAD.pack_into(self._map, 64, self._note_gen, 0)
        self._map[72 : 72 + len(data)] = data
        self._note_gen += 1
        _NOTE_HEAD.pack_into(self._map, 64, self._note_gen, len(data))

    def close(self) -> None:
        """Unmap (the file stays: readers keep their mapping; the next agent reuses it)."""
        self._words.release()
        self._map.close()


@dataclass(frozen=True, slots=True)
class AgentBeat:
    """What the header says about the agent."""

    pid: int
    state: str
    heartbeat_ns: int
    stale_after: float
    period: float


class SegmentReader:
    """A worker's side: a read-only mapping of the segment (opened lazily: the agent may
    start after the worker)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            info = _check_owned(fd, path)
            if info.st_size < HEADER_SIZE or os.pread(fd, 8, 0) != MAGIC:
                raise SegmentError(f"{path} is not a stageconfig segment (yet)")
            self.inode = info.st_ino
            version, capacity = struct.unpack("<II", os.pread(fd, 8, 8))
            if version != LAYOUT_VERSION:
                raise SegmentError(
                    f"{path} has layout {version}; this client reads {LAYOUT_VERSION}"
                )
            self._map = mmap.mmap(fd, HEADER_SIZE + 2 * capacity, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        self.capacity = capacity
        self.words = memoryview(self._map)[:64].cast("Q")
        """The header's 8-byte words: ``words[2]`` is the generation (the hot path)."""

    @property
    def generation(self) -> int:
        """The generation published last (0: none)."""
        return int(self.words[_GEN_WORD])

    def read(self) -> tuple[int, bytes] | None:
        """The newest payload and its generation, never torn (None: none published)."""
        data = self._map
        for attempt in range(_READ_ATTEMPTS):
            generation = int(self.words[_GEN_WORD])
            if generation == 0:
                return None
            offset = HEADER_SIZE + (generation % 2) * self.capacity
            length, crc, slot_generation = SLOT_HEADER.unpack_from(data, offset)
            if slot_generation == generation and length <= self.capacity - SLOT_HEADER.size:
                start = offset + SLOT_HEADER.size
                payload = data[start : start + length]
                if self.words[_GEN_WORD] == generation and zlib.crc32(payload) == crc:
                    return generation, payload
            if attempt > 10:
                time.sleep(0.0001)  # the writer is mid-publish twice over: let it run
        raise SegmentError(f"{self.path}: no consistent snapshot after {_READ_ATTEMPTS} reads")

    def beat(self) -> AgentBeat:
        """The agent's pid, state and last heartbeat."""
        pid, state = _AGENT.unpack_from(self._map, 32)
        stale_ms, period_ms = _TIMING.unpack_from(self._map, 40)
        name = AGENT_STATES[state] if state < len(AGENT_STATES) else "CONNECTING"
        return AgentBeat(
            pid, name, int(self.words[_HEARTBEAT_WORD]), stale_ms / 1000, period_ms / 1000
        )

    def note(self) -> str:
        """The agent's last error ("" when none)."""
        for _ in range(10):
            before, length = _NOTE_HEAD.unpack_from(self._map, 64)
            text = self._map[72 : 72 + min(length, NOTE_MAX)]
            after = _NOTE_HEAD.unpack_from(self._map, 64)[0]
            if before == after and not before & 1:
                return text.decode("utf-8", "replace")
        return ""

    def close(self) -> None:
        """Unmap."""
        self.words.release()
        with contextlib.suppress(BufferError):
            self._map.close()


def try_lock(path: Path) -> int | None:
    """Take the agent lock at ``path`` (a descriptor holding it), or None when another
    process holds it. The kernel drops the lock when its holder dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def agent_running(paths: SegmentPaths) -> bool:
    """Whether an agent holds the lock of ``paths`` now."""
    if not paths.lock.exists():
        return False
    fd = os.open(paths.lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a shared lock taken here
    return False


def lock_holder(paths: SegmentPaths) -> int | None:
    """The pid written in the lock file by the agent holding it (None: none)."""
    if not agent_running(paths):
        return None
    with contextlib.suppress(OSError, ValueError):
        return int(paths.lock.read_text().strip() or 0) or None
    return None
