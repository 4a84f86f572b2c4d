"""`status`: what the agent of this user is doing, from its status file and its lock."""

from __future__ import annotations

import argparse
import json

from agent import paths
from agent.health import status_line
from agent.instance import AlreadyRunning, InstanceLock
from agent.status import read_status

EXIT_NOT_RUNNING = 3


def cmd_status(args: argparse.Namespace) -> int:
    config_dir = paths.config_dir()
    probe = InstanceLock(config_dir)
    try:
        probe.acquire()
    except AlreadyRunning:
        running = True
    else:
        running = False
        probe.release()
    data = read_status(config_dir) or {}
    if args.json:
        print(json.dumps({"running": running, **data}, indent=2, sort_keys=True))
        return 0 if running else EXIT_NOT_RUNNING
    if not running:
        print("agent: not running")
        if data:
            print(f"last seen: {data.get('updated_at')} ({data.get('state')})")
    else:
        print(f"agent: running (pid {data.get('pid')}), {data.get('state', 'unknown')}")
    if data:
        last = data.get("last_upload") or {}
        error = data.get("last_error") or {}
        print(f"recording: {data.get('recording_id') or '-'}")
        settings = data.get("settings")
        if isinstance(settings, dict):
            def num(key: str) -> str:
                value = settings.get(key)
                return f"{value:g}" if isinstance(value, int | float) else "?"

            print(f"settings: {num('fps')} fps, segments of {num('segment_seconds')} s, "
                  + (f"pause after {num('idle_seconds')} s idle" if settings.get("idle_seconds")
                     else "no idle pause")
                  + (f", quality {settings['quality']}" if settings.get("quality") else ""))
        capture = status_line(data.get("capture"))
        if capture is not None:
            print(capture)
        print(f"segments uploaded: {data.get('uploaded', 0)}"
              + (f", last seq {last.get('seq')} at {last.get('at')}" if last else ""))
        in_ram = data.get("spool_memory_segments") or 0
        print(f"spool: {data.get('spool_segments', 0)} segment(s), "
              f"{data.get('spool_bytes', 0)} bytes"
              + (f" ({in_ram} held in RAM: the disk refuses the spool)" if in_ram else ""))
        gaps = data.get("gaps") or []
        print(f"gaps: {', '.join(map(str, gaps)) if gaps else 'none'}")
        print(f"errors: {data.get('errors', 0)}"
              + (f", last at {error.get('at')}: {error.get('message')}" if error else ""))
    return 0 if running else EXIT_NOT_RUNNING


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p_status = commands.add_parser(
        "status",
        help="show what the agent of this user is doing",
        description="Show whether the agent runs, its recording, spool, last upload and "
        "errors, from the status file the running agent keeps in its config directory. "
        "Exit status 0 when an agent runs, 3 when none does.",
    )
    p_status.add_argument("--json", action="store_true", help="print the status as JSON")
    p_status.set_defaults(func=cmd_status)
