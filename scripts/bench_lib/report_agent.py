"""Scenario f's table in the report: one stream per host against a ConfigClient per
process and etcd, each number next to its target (issue 17)."""

from __future__ import annotations

import math
from pathlib import Path

from bench_lib.agents import AgentFanoutResult, AgentResults

START = "<!-- bench:agent (written by scripts/bench --only f --update-docs) -->"
END = "<!-- /bench:agent -->"
SECTION_END = "<!-- /section:benchmarks -->"

ATTACHED_MAX_KIB = 3 * 1024
ATTACHED_MAX_THREADS = 0
FANOUT_MAX_RATIO_TO_ETCD = 0.5
SERVER_MAX_KB_PER_READER = 1.0
HOT_MAX_NS = 1_000.0

HEADING = "#### One stream per host: `stageconfig-agent` (scenario f)"

NOTES = """\
Writes are 1–2 s apart here (every column alike): after each update every worker process
reports what it applied — through the agents (held 0.3–1 s, so they follow the fan-out;
one ReportStatus per agent and flush, carrying its processes' reports) or from the
direct clients (one ReportStatus each) — and spaced writes keep one update's reports out
of the next one's fan-out.
How: each simulated host is one `stageconfig-agent` process with its own tmpfs segment
directory; the readers are `AttachedClient`s spread over them and over reader processes
(the machine's 2 cores hold a few dozen such processes comfortably; the count is in the
table); the direct column holds `ConfigClient`s (their count is in the cell: each has
three threads and grpc's own, and 1,000 of them starve this shared 2-core machine — load
average ~300, streams going silent — so the full run holds 250). A reader process sweeps
its readers' `get()` every 1 ms — the same sweep for both columns — and stamps when each
returned the new revision; "every reader" is the last of them, from the UpdateConfig
acknowledgement. etcd is scenario c's code with as many watchers, in the same run.
Worker cost is measured in fresh spawned processes over the same baseline (the standard
modules every worker process already holds — json, logging, pathlib, socket; a Celery
child inherits them from its parent — and `import stageconfig` with its types, as any app
using them has): VmRSS and OS threads after the client is ready. A process that never
routes provider calls does not load the breaker module (hashlib's OpenSSL and email.utils,
about 5 MB). Server RSS per reader is the server's VmRSS while the readers are held
(their agents' streams and every reader's fleet report included) minus before, over the
readers."""


def _ms(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:,.1f} ms"


def _verdict(met: bool, miss: str) -> str:
    return "met" if met else f"**missed** ({miss})"


def _fanout_cell(f: AgentFanoutResult) -> str:
    s = f.all_applied_ms
    return f"{f.readers:,} readers: p50 {_ms(s.p50)} · p99 {_ms(s.p99)} (n={s.n} updates)"


def render(results: AgentResults) -> list[str]:
    """The lines of scenario f's table (empty when it did not run)."""
    rows = [
        HEADING,
        "",
        "| measure | attached (agent) | direct ConfigClient | etcd | target | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    cost = results.cost
    if cost is not None:
        rss_ok = cost.attached_rss_kib <= ATTACHED_MAX_KIB
        threads_ok = cost.attached_threads <= ATTACHED_MAX_THREADS
        rows.append(
            f"| worker-side cost per process (RSS added, OS threads) | "
            f"{cost.attached_rss_kib / 1024:.1f} MB, {cost.attached_threads} threads"
            f"{', grpc imported' if cost.attached_grpc else ', no grpc'} | "
            f"{cost.direct_rss_kib / 1024:.1f} MB, {cost.direct_threads} threads | — | "
            f"≤ 3 MB, 0 threads | "
            f"{_verdict(rss_ok and threads_ok, f'{cost.attached_rss_kib / 1024:.1f} MB')} |"
        )
        if cost.hot_get is not None:
            p50 = cost.hot_get.p50
            rows.append(
                f"| hot read `get()` (attached), p50 / p99 / batch mean | "
                f"{p50:,.0f} / {cost.hot_get.p99:,.0f} / {cost.hot_batch_mean_ns:,.0f} ns "
                f"| — | — | p50 < 1 µs | {_verdict(p50 < HOT_MAX_NS, f'{p50:,.0f} ns')} |"
            )
    agent = next((f for f in results.fanout if f.mode == "agent"), None)
    direct = next((f for f in results.fanout if f.mode == "direct"), None)
    silent = next((f for f in results.fanout if f.mode == "agent-silent"), None)
    etcd = results.etcd
    if agent is not None:
        etcd_p99 = etcd.all_applied_ms.p99 if etcd is not None else math.nan
        ratio = agent.all_applied_ms.p99 / etcd_p99 if etcd_p99 else math.nan
        rows.append(
            f"| fan-out: ack → every reader's `get()` has it, {agent.readers:,} readers "
            f"({agent.hosts} agents, {agent.processes} reader processes) | "
            f"{_fanout_cell(agent)} | {_fanout_cell(direct) if direct else '—'} | "
            f"{f'p50 {_ms(etcd.all_applied_ms.p50)} · p99 {_ms(etcd_p99)}' if etcd else '—'} "
            f"| p99 ≤ 0.5× etcd | "
            f"{_verdict(ratio <= FANOUT_MAX_RATIO_TO_ETCD, f'{ratio:.2f}× etcd')} |"
        )
        if silent is not None:
            floor = silent.all_applied_ms.p99 / etcd_p99 if etcd_p99 else math.nan
            rows.append(
                f"| the same, readers not reporting (the path's floor) | "
                f"{_fanout_cell(silent)} | — | — | context | {floor:.2f}× etcd |"
            )
        rows.append(
            f"| server streams at {agent.readers:,} readers (ListWatchers) | "
            f"{agent.server_streams} | {direct.server_streams if direct else '—'} | — | "
            f"one per host | {_verdict(agent.server_streams <= agent.hosts, 'more')} |"
        )
        per = agent.server_rss_per_reader_kib * 1.024
        streams_per = agent.server_rss_streams_per_reader_kib * 1.024
        direct_per = f"{direct.server_rss_per_reader_kib * 1.024:.1f} KB" if direct else "—"
        rows.append(
            f"| server RSS per worker reader: the agents' streams / with every reader's "
            f"fleet record | {streams_per:.2f} KB / {per:.2f} KB | — / {direct_per} | — | "
            f"≤ 1 KB | {_verdict(per <= SERVER_MAX_KB_PER_READER, f'{per:.2f} KB in all')} |"
        )
    cap = results.capacity
    if cap is not None:
        rows.append(
            f"| server holding {cap.connected:,} agents (one stream each) | "
            f"{cap.rss_after_kib / 1024:.0f} MB RSS, {cap.per_watcher_kib:.1f} KiB per agent | "
            f"— | — | context | — |"
        )
    return [*rows, "", NOTES, ""]


def update_page(page: Path, lines: list[str], command: str) -> None:
    """Put scenario f's table between its own markers in ``page`` (before the end of
    the benchmarks section the first time), leaving every other line as it is."""
    text = page.read_text()
    block = f"{START}\n" + "\n".join([*lines, f"Last run: `{command}`.", ""]) + f"\n{END}\n"
    start, end = text.find(START), text.find(END)
    if start >= 0 and end > start:
        text = text[:start] + block + text[end + len(END) :].lstrip("\n")
    else:
        at = text.find(SECTION_END)
        if at < 0:
            raise ValueError(f"{page} has no {SECTION_END}")
        text = text[:at].rstrip("\n") + "\n\n" + block + "\n" + text[at:]
    page.write_text(text)
