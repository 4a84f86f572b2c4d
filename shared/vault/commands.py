"""What each command does: read the bucket, check, print (text or `--json`), and say the exit
code. The commands call plain functions of the other modules; this module only wires them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from shared.bucket.keys import CONTROL
from shared.bucket.policy import vault_policy
from shared.vault import report as custody
from shared.vault.audit import verify_audit
from shared.vault.catalog import Summary, catalog, day_range, iso
from shared.vault.errors import EXIT_CLEAN, EXIT_PROBLEMS, UsageError
from shared.vault.export import export
from shared.vault.inventory import Inventory, scan
from shared.vault.problems import Problem
from shared.vault.progress import Progress
from shared.vault.recording import RecordingCheck, RecordingChecker
from shared.vault.store import Location, Store
from shared.vault.trust import Trust


class Context:
    """The bucket, read once per run: its listing and whom to trust."""

    def __init__(self, args: argparse.Namespace, *, only: tuple[str, ...] = ()) -> None:
        if not args.bucket:
            raise UsageError("--bucket is required for this command")
        self.args = args
        self.store = Store(Location(
            bucket=args.bucket, prefix=args.prefix.strip("/"), endpoint_url=args.endpoint_url,
            region=args.region, profile=args.profile,
        ))
        # `only`: list just these parts of the prefix (the broker's records, one recording),
        # not every segment in the bucket.
        self.inventory: Inventory = scan(self.store, *only)
        pinned = frozenset(args.trust_keys) if args.trust_keys else None
        self.trust = Trust(self.store, self.inventory, pinned=pinned)
        if pinned is None and len(self.trust.published) > 1:
            warn_several_keys(self.trust.published)


def warn_several_keys(published: list[str]) -> None:
    """Several broker keys and none pinned: each is believed. A rotation of the broker's
    signing key publishes a second one, but so could anyone who may write the prefix."""
    print(
        f"warning: {len(published)} broker keys are published under _bucketreel/keys/ "
        f"({', '.join(sorted(published))}) and every one of them is believed. If the broker's "
        "signing key was not rotated, one may be someone else's: pin the right ones with "
        "--trust-key (its operator's `admin signing-key` prints the current one).",
        file=sys.stderr,
    )


def emit(args: argparse.Namespace, doc: dict[str, Any], lines: Iterable[str]) -> None:
    if args.json:
        json.dump(doc, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        for line in lines:
            print(line)


def _at(ms: int | None, zone: ZoneInfo) -> str:
    return iso(ms, zone) or "?"


# -- list ------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    ctx = Context(args)
    between = day_range(args.day, args.zone) if args.day else None
    found = catalog(ctx.inventory, ctx.store, ctx.trust, person=args.person, between=between)
    lines = [
        f"{_at(s.started_at_ms, args.zone)}  {_at(s.ended_at_ms, args.zone)}  {s.person:<32} "
        f"{s.ref.recording_id}  {len(s.ref.segments):>5} segments"
        + ("" if s.closed else "  (open: no manifest)")
        for s in found
    ] or ["no recording matches"]
    emit(args, {
        "recordings": [s.to_json() for s in found],
        "broker_keys": sorted(ctx.trust.keys),
    }, lines)
    return EXIT_CLEAN


# -- verify ----------------------------------------------------------------------------------


def _chosen(args: argparse.Namespace, ctx: Context) -> list[Summary]:
    if args.recording:
        refs = ctx.inventory.find(args.recording.strip("/").rsplit("/", 1)[-1])
        if not refs:
            raise UsageError(f"no recording {args.recording} under this prefix")
        return catalog(_only(ctx.inventory, refs), ctx.store, ctx.trust)
    if args.all:
        return catalog(ctx.inventory, ctx.store, ctx.trust)
    if args.person and args.day:
        return catalog(ctx.inventory, ctx.store, ctx.trust, person=args.person,
                       between=day_range(args.day, args.zone))
    raise UsageError("say what to verify: RECORDING, --person P --day D, --all or --report R")


def _only(inventory: Inventory, refs: list[Any]) -> Inventory:
    return Inventory(broker_keys=inventory.broker_keys, devices=inventory.devices,
                     anchors=inventory.anchors, recordings=refs)


def run_verify(args: argparse.Namespace) -> int:
    if args.report:
        return _verify_report(args)
    if args.recording and (args.all or args.person or args.day):
        raise UsageError("give a RECORDING, or --person with --day, or --all: one of them")
    path = args.recording.strip("/") if args.recording else ""
    ctx = Context(args, only=(CONTROL, path) if path.count("/") == 2 else ())
    chosen = _chosen(args, ctx)
    progress = Progress("verify")
    progress.add(sum(len(s.ref.segments) for s in chosen))
    checks: list[RecordingCheck] = []
    try:
        for summary in chosen:
            checker = RecordingChecker(summary.ref, ctx.store, ctx.trust)
            for seen, _ in checker.run():
                progress.step(seen.key)
            checks.append(checker.result)
    finally:
        progress.close()
    problems = list(ctx.trust.problems)
    for check in checks:
        problems.extend(check.all_problems())
    problems = _unique(problems)
    lines = []
    for summary, check in zip(chosen, checks, strict=True):
        own = _unique(check.all_problems())
        state = "ok" if not own else f"{len(own)} problem(s)"
        lines.append(
            f"{summary.ref.name}  {summary.person}  {len(check.segments)} segments: {state}"
        )
        lines += [f"  {p.line()}" for p in own]
        lines += [f"  note: {n}" for n in check.notes]
    lines += [p.line() for p in ctx.trust.problems]
    lines.append(
        f"{len(checks)} recording(s), {sum(len(c.segments) for c in checks)} segment(s) checked "
        f"against broker key(s) {', '.join(sorted(ctx.trust.keys)) or 'none'}: "
        + (f"{len(problems)} PROBLEM(S)" if problems else "no problem")
    )
    emit(args, {
        "clean": not problems,
        "problems": [p.to_json() for p in problems],
        "broker_keys": sorted(ctx.trust.keys),
        "recordings": [
            {**s.to_json(), "checked_segments": len(c.segments),
             "problems": [p.to_json() for p in _unique(c.all_problems())], "notes": c.notes}
            for s, c in zip(chosen, checks, strict=True)
        ],
    }, lines)
    return EXIT_PROBLEMS if problems else EXIT_CLEAN


def _unique(problems: Iterable[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _verify_report(args: argparse.Namespace) -> int:
    if args.recording or args.all or args.person or args.day:
        raise UsageError("--report is checked on its own: give no RECORDING, --person or --all")
    path = Path(args.report)
    found = custody.read(path)
    pinned = frozenset(args.trust_keys) if args.trust_keys else None
    problems = custody.check_offline(found, path, pinned)
    against_bucket = False
    if args.bucket:
        ctx = Context(args)

        def fetch(key: str) -> bytes | None:
            got = ctx.store.fetch(key)
            return None if got is None else got.data

        problems += custody.check_against_bucket(found, fetch)
        against_bucket = True
    lines = [p.line() for p in problems] + [
        f"{found.file}: {len(found.segments)} segments checked "
        + ("offline and against the bucket" if against_bucket else "offline (give --bucket to "
           "check against the bucket too)")
        + (f": {len(problems)} PROBLEM(S)" if problems else ": no problem"),
    ]
    if found.problems:
        lines.append(f"the report itself lists {len(found.problems)} problem(s) found at export")
    emit(args, {
        "clean": not problems and not found.problems, "file": found.file,
        "against_bucket": against_bucket, "problems": [p.to_json() for p in problems],
        "reported_problems": [msgspec_builtins(p) for p in found.problems],
    }, lines)
    return EXIT_PROBLEMS if problems or found.problems else EXIT_CLEAN


def msgspec_builtins(problem: custody.ReportProblem) -> dict[str, str]:
    return {"kind": problem.kind, "subject": problem.subject, "message": problem.message}


# -- verify-audit ----------------------------------------------------------------------------


def run_verify_audit(args: argparse.Namespace) -> int:
    ctx = Context(args, only=(CONTROL,))
    checks = verify_audit(Path(args.export), args.tenant, ctx.inventory, ctx.store, ctx.trust)
    problems = [p for c in checks for p in c.problems]
    lines = []
    for check in checks:
        lines.append(
            f"tenant {check.tenant_id}: {check.entries} entries, {check.anchors} anchors "
            f"(newest: entry {check.newest_anchor if check.newest_anchor is not None else '-'})"
            + (f": {len(check.problems)} PROBLEM(S)" if check.problems else ": no problem")
        )
        lines += [f"  {p.line()}" for p in check.problems]
        lines += [f"  note: {n}" for n in check.notes]
    emit(args, {"clean": not problems, "tenants": [c.to_json() for c in checks]}, lines)
    return EXIT_PROBLEMS if problems else EXIT_CLEAN


# -- export ----------------------------------------------------------------------------------


def _ms(value: datetime, zone: ZoneInfo) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return int(value.timestamp() * 1000)


def run_export(args: argparse.Namespace) -> int:
    start_ms, end_ms = _ms(args.start, args.zone), _ms(args.end, args.zone)
    if end_ms <= start_ms:
        raise UsageError("--to must be after --from")
    ctx = Context(args)
    chosen = catalog(ctx.inventory, ctx.store, ctx.trust, person=args.person,
                     between=(start_ms, end_ms))
    done = export(ctx.store, ctx.trust, chosen, person=args.person, start_ms=start_ms,
                  end_ms=end_ms, out=Path(args.output), force=args.force,
                  progress=Progress("export"))
    problems = done.problems
    lines = [
        f"{done.out}: {len(done.report.segments)} segments, "
        f"{done.report.duration_ms / 1000:.1f} s",
        f"custody report: {done.report_json} and {done.report_text}",
    ] + [f"{p.kind.upper():<9}  {p.subject}: {p.message}" for p in problems]
    emit(args, {
        "clean": not problems, "file": str(done.out), "report": str(done.report_json),
        "report_text": str(done.report_text), "segments": len(done.report.segments),
        "duration_ms": done.report.duration_ms,
        "problems": [msgspec_builtins(p) for p in problems],
    }, lines)
    return EXIT_PROBLEMS if problems else EXIT_CLEAN


def run_policy(args: argparse.Namespace) -> int:
    if not args.bucket:
        raise UsageError("--bucket is required for this command")
    json.dump(vault_policy(args.bucket, args.prefix), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_CLEAN


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "policy": run_policy,
    "list": run_list,
    "verify": run_verify,
    "verify-audit": run_verify_audit,
    "export": run_export,
}
