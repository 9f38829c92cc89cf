"""``stageconfigctl rollout …``: start a rollout of a stage's new config to a cohort,
promote or abort it, and show it — plus the lines ``status`` adds for every running one.

    stageconfigctl rollout start POEM --model gpt-b --percent 25
    printf '%s\n' "$NEW_KEY" | stageconfigctl rollout start POEM --key-stdin --percent 10
    stageconfigctl rollout start POEM --model gpt-b --client-id worker-1 --client-id worker-2 \\
        --bake-seconds 600 --min-tasks 50 --max-failure-rate-increase 0.05
    stageconfigctl rollout start POEM --percent 10 --fallback openai:gpt-4o-mini \\
        --fallback-keys-stdin < keys.txt     # the candidate's own routes, as with ``set``
    stageconfigctl rollout status [POEM]
    stageconfigctl rollout promote POEM [--expected-revision 14]
    stageconfigctl rollout abort POEM

Client ids and decisions come from workers and the server: every line goes through the
command's safe output (``output.SafeOutput``) and long cohorts are cut.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO

from stageconfig.admin import (
    AdminClient,
    Rollout,
    RolloutPolicy,
    RolloutResult,
    RolloutSide,
    StageView,
)
from stageconfig.ctl.exits import Exit, UsageError
from stageconfig.ctl.output import config_line, print_json, short, when
from stageconfig.ctl.routes import add_fallback_flags, fallback_specs

SHOWN_CLIENT_IDS = 5
"""How many of an explicit cohort's client ids a line names before ``(+N more)``."""


def _percent(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 99:
        raise argparse.ArgumentTypeError("must be 1 to 99")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _share(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1 (0.05: five points)")
    return number


def add_rollout_commands(
    rollout: argparse.ArgumentParser, stage: Callable[[str], Any], common: argparse.ArgumentParser
) -> None:
    """The sub-commands of ``rollout`` (``stage`` parses a stage name; ``common`` adds
    ``--json``)."""
    actions = rollout.add_subparsers(dest="rollout_command", required=True, metavar="ACTION")

    def action(name: str, handler: Callable[..., Exit], help_: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, parents=[common], help=help_, description=help_)
        sub.set_defaults(handler=handler)
        return sub

    start = action("start", cmd_rollout_start, "send a new config to a cohort of clients first")
    start.add_argument("stage", type=stage, metavar="STAGE")
    start.add_argument("--provider", help="default: the stored provider")
    start.add_argument("--model", help="default: keep the stored one if offered, else the first")
    start.add_argument(
        "--option", action="append", metavar="NAME=VALUE", help="provider option (repeatable)"
    )
    start.add_argument(
        "--key-stdin",
        action="store_true",
        help="the candidate's new key, from the first line of stdin (default: the stored key)",
    )
    cohort = start.add_mutually_exclusive_group(required=True)
    cohort.add_argument("--percent", type=_percent, help="share of clients, 1-99")
    cohort.add_argument(
        "--client-id", action="append", dest="client_ids", metavar="ID", help="(repeatable)"
    )
    start.add_argument("--bake-seconds", type=_count, metavar="S", help="judge after S seconds")
    start.add_argument("--min-tasks", type=_count, metavar="N", help="…and N canary tasks")
    start.add_argument(
        "--max-failure-rate-increase",
        type=_share,
        metavar="F",
        help="promote when the canary's failure rate exceeds the stable one's by at most F, "
        "else abort (the three policy flags go together; without them: manual)",
    )
    start.add_argument("--expected-revision", type=int, metavar="N")
    start.add_argument("--comment", default="", help="kept in the history")
    add_fallback_flags(start)  # the candidate's routes (default: the stable's)

    for name, handler, help_ in (
        ("promote", cmd_rollout_promote, "make the candidate the config of every client"),
        ("abort", cmd_rollout_abort, "send the cohort back to the stable config"),
    ):
        sub = action(name, handler, help_)
        sub.add_argument("stage", type=stage, metavar="STAGE")
        sub.add_argument(
            "--expected-revision",
            type=int,
            metavar="N",
            help="only if the candidate is still revision N",
        )
        sub.add_argument("--comment", default="", help="kept in the history")

    status = action("status", cmd_rollout_status, "the running rollouts, each side's outcomes")
    status.add_argument("stage", type=stage, nargs="?", metavar="STAGE")


def _options(pairs: list[str] | None) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--option wants NAME=VALUE, got {pair!r}")
        options[name] = value
    return options


def cohort_text(rollout: Rollout) -> str:
    """The cohort in words, an explicit list cut after ``SHOWN_CLIENT_IDS`` ids."""
    if rollout.percent or len(rollout.client_ids) <= SHOWN_CLIENT_IDS:
        return rollout.cohort
    shown = ", ".join(short(c, 40) for c in rollout.client_ids[:SHOWN_CLIENT_IDS])
    more = len(rollout.client_ids) - SHOWN_CLIENT_IDS
    return f"{len(rollout.client_ids)} clients: {shown} (+{more} more)"


def policy_text(policy: RolloutPolicy | None) -> str:
    """``manual (promote or abort)`` or the automatic policy in one phrase."""
    if policy is None:
        return "manual (promote or abort)"
    return (
        f"automatic: after {policy.bake_seconds} s and {policy.min_tasks} canary tasks, "
        f"promote if the failure rate rises by at most "
        f"{policy.max_failure_rate_increase * 100:.1f} points, else abort"
    )


def side_text(side: RolloutSide) -> str:
    """``rev 14  5 clients  failure 40.0% (4/10)``."""
    clients = f"{side.clients} client" + ("" if side.clients == 1 else "s")
    outcome = (
        f"failure {side.failure_rate:.1%} ({side.failed}/{side.finished})"
        if side.finished
        else "no task finished"
    )
    return f"rev {side.revision}  {clients}  {outcome}"


def rollout_lines(rollout: Rollout) -> list[str]:
    """A rollout in a few ``name  value`` lines: state, candidate, cohort, both sides,
    policy and, once ended, how."""
    candidate = rollout.candidate
    what = config_line(candidate) if candidate is not None else "(not readable by this client)"
    started = f"{when(rollout.started_at)} by {rollout.started_by or '-'}"
    lines = [
        ("state", f"{rollout.state.value} (started {started})"),
        ("candidate", f"revision {rollout.candidate_revision}: {what}"),
        *(
            (f"fallback {index}", f"{r.provider_kind.value} {r.model} key {r.api_key}")
            for index, r in enumerate(candidate.fallbacks if candidate else (), start=1)
        ),
        ("stable", f"revision {rollout.stable_revision}"),
        ("cohort", cohort_text(rollout)),
        ("canary side", side_text(rollout.canary)),
        ("stable side", side_text(rollout.stable)),
        ("policy", policy_text(rollout.policy)),
    ]
    if not rollout.running:
        ended = f"{when(rollout.ended_at)} by {rollout.ended_by or '-'}"
        lines.append(("ended", f"{ended}, revision {rollout.end_revision}"))
    if rollout.decision:
        lines.append(("decision", rollout.decision))
    return [f"  {name.ljust(11)}  {value}" for name, value in lines]


def rollout_summary(rollout: Rollout) -> list[str]:
    """A running rollout in one line (a list, empty for none, to add to others)."""
    candidate = rollout.candidate
    model = f" ({candidate.provider_kind.value} {candidate.model})" if candidate else ""
    return [
        f"rollout: candidate revision {rollout.candidate_revision}{model} to "
        f"{cohort_text(rollout)}; canary {side_text(rollout.canary)}; "
        f"stable {side_text(rollout.stable)}"
    ]


def status_lines(views: tuple[StageView, ...]) -> list[str]:
    """What ``status`` adds under its table: each running rollout in one line."""
    return [
        f"{view.stage_type.value} {line}"
        for view in views
        if view.rollout is not None
        for line in rollout_summary(view.rollout)
    ]


def _key_from_stdin(stdin: TextIO) -> str:
    key = stdin.readline().rstrip("\r\n")
    if not key:
        raise UsageError("--key-stdin: no key on stdin (omit it to keep the stored key)")
    return key


def cmd_rollout_start(
    client: AdminClient, args: argparse.Namespace, out: TextIO, stdin: TextIO = sys.stdin
) -> Exit:
    """UpdateConfig with a RolloutSpec: the candidate for the cohort only."""
    policy = {
        "--bake-seconds": args.bake_seconds,
        "--min-tasks": args.min_tasks,
        "--max-failure-rate-increase": args.max_failure_rate_increase,
    }
    missing = [flag for flag, value in policy.items() if value is None]
    if 0 < len(missing) < len(policy):
        raise UsageError(f"an automatic policy needs all three of {', '.join(policy)}")
    key = _key_from_stdin(stdin) if args.key_stdin else None
    fallbacks = fallback_specs(args, stdin)  # keys after the primary's line, as in ``set``
    try:
        rollout = client.start_rollout(
            args.stage,
            args.provider.upper().replace("-", "_") if args.provider else None,
            api_key=key,
            model=args.model,
            options=_options(args.option) or None,
            percent=args.percent,
            client_ids=args.client_ids,
            bake_seconds=args.bake_seconds,
            min_tasks=args.min_tasks,
            max_failure_rate_increase=args.max_failure_rate_increase,
            expected_revision=args.expected_revision,
            comment=args.comment,
            fallbacks=fallbacks,
            clear_fallbacks=args.clear_fallbacks,
        )
    except ValueError as error:  # an unknown provider, half a policy, nothing stored
        raise UsageError(str(error)) from error
    if args.json:
        print_json(rollout, out)
        return Exit.OK
    out.write(f"rollout of {rollout.stage_type.value} started\n")
    out.write("\n".join(rollout_lines(rollout)) + "\n")
    return Exit.OK


def _ended(result: RolloutResult, args: argparse.Namespace, out: TextIO, verb: str) -> Exit:
    if args.json:
        print_json(result, out)
        return Exit.OK
    config = result.config
    out.write(f"{verb} at revision {config.revision}: {config_line(config)}\n")
    if result.rollout is not None:
        out.write("\n".join(rollout_lines(result.rollout)) + "\n")
    return Exit.OK


def cmd_rollout_promote(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """PromoteRollout: the candidate for every client."""
    result = client.promote_rollout(
        args.stage, expected_revision=args.expected_revision, comment=args.comment
    )
    return _ended(result, args, out, "promoted: every client now has")


def cmd_rollout_abort(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """AbortRollout: the cohort back on the stable config."""
    result = client.abort_rollout(
        args.stage, expected_revision=args.expected_revision, comment=args.comment
    )
    return _ended(result, args, out, "aborted: the cohort is back on the stable config")


def cmd_rollout_status(client: AdminClient, args: argparse.Namespace, out: TextIO) -> Exit:
    """The running rollout of one stage or of every stage, with each side's clients and
    outcomes (from ListConfigs)."""
    views = client.list_configs().stages
    if args.stage is not None:
        views = tuple(v for v in views if v.stage_type is args.stage)
    if args.json:
        print_json({v.stage_type.value: v.rollout for v in views}, out)
        return Exit.OK
    for view in views:
        if view.rollout is None:
            out.write(f"{view.stage_type.value}: no rollout running\n")
            continue
        out.write(f"{view.stage_type.value}: rollout\n")
        out.write("\n".join(rollout_lines(view.rollout)) + "\n")
    return Exit.OK
