"""Smoke-test the built binaries on this machine: their version, then a short real capture.

    python build/smoke_binary.py [--dist DIR] [--seconds S]

For each program `build_agent.executables()` lists for this OS, in DIST (default
`build/dist`): `--version` exits 0, and a console program prints
`bucketreel-agent <installed package version>` (the windowless Windows build has no stdout,
so only its exit status is checked). Then the console program records for real, against
`tests/agent/fakebroker.py` (an in-process stand-in for the broker's device API and the
bucket's presigned PUT; standard library only):

  - `enroll --broker URL --code CODE` into a fresh agent home (`BUCKETREEL_AGENT_HOME`);
  - `run --fps 2 --segment-seconds 1 --duration S --idle-seconds 0`: captures this machine's
    screen (on Linux a display must be there, e.g. under `xvfb-run`), encodes, seals, uploads;
    `--idle-seconds 0` because a CI machine has had no keyboard or mouse input for long;
  - the recording is finished, every uploaded segment was verified by the fake and decodes
    (PyAV, in this interpreter) with at least one frame. The frame size and counts are printed.

Needs the agent's packages in this interpreter (`pip install -e .[agent]`), not the broker's.
Exit status: 0 every check passed, 1 one failed (what, and the binary's stderr, printed).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import av

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # for tests.agent.fakebroker: `tests` is not an installed package

from shared import version  # noqa: E402
from tests.agent.fakebroker import FakeBroker  # noqa: E402

FPS = 2
SEGMENT_SECONDS = 1


class SmokeError(RuntimeError):
    """A check failed; the message says which and how."""


def load_build_script() -> ModuleType:
    """build/build_agent.py, loaded by path (as the spec loads it)."""
    path = HERE / "build_agent.py"
    found = importlib.util.spec_from_file_location("bucketreel_build_agent", path)
    if found is None or found.loader is None:
        raise SmokeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(found)
    sys.modules[found.name] = module
    found.loader.exec_module(module)
    return module


def agent_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUCKETREEL_")}
    env["BUCKETREEL_AGENT_HOME"] = str(home)
    return env


def run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False,
        stdin=subprocess.DEVNULL, env=env,
    )


def check_version(binary: Path, console: bool, env: dict[str, str]) -> None:
    result = run([str(binary), "--version"], env, timeout=120)
    if result.returncode != 0:
        raise SmokeError(f"{binary} --version exited {result.returncode}: {result.stderr}")
    expected = f"bucketreel-agent {version()}"
    if console and result.stdout.strip() != expected:
        raise SmokeError(f"{binary} --version printed {result.stdout!r}, not {expected!r}")
    print(f"ok: {binary.name} --version: {result.stdout.strip() or '(no console, exit 0)'}")


def decoded(data: bytes) -> tuple[int, int, int]:
    """(frames, width, height) of one uploaded segment."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        frames = sum(1 for _ in container.decode(video=0))
    return frames, *size


def check_capture(binary: Path, seconds: float, home: Path) -> None:
    env = agent_env(home)
    broker = FakeBroker()
    broker.start()
    try:
        enrolled = run(
            [str(binary), "enroll", "--broker", broker.url, "--code", broker.issue_code()],
            env, timeout=120,
        )
        if enrolled.returncode != 0:
            raise SmokeError(f"enroll exited {enrolled.returncode}:\n{enrolled.stderr}")
        done = run(
            [str(binary), "run", "--fps", str(FPS), "--segment-seconds", str(SEGMENT_SECONDS),
             "--duration", str(seconds), "--idle-seconds", "0"],
            env, timeout=seconds + 120,
        )
        if done.returncode != 0:
            raise SmokeError(f"run exited {done.returncode}:\n{done.stderr}")
        recordings = list(broker.recordings.values())
        if len(recordings) != 1 or not recordings[0]["finished"]:
            raise SmokeError(f"expected one finished recording, got {recordings}:\n{done.stderr}")
        objects = dict(broker.objects)
        verified = recordings[0]["verified"]
        if not objects or len(verified) != len(objects):
            raise SmokeError(
                f"{len(objects)} segment(s) uploaded, {len(verified)} verified:\n{done.stderr}"
            )
        total = 0
        for key, data in sorted(objects.items()):
            frames, width, height = decoded(data)
            if frames < 1:
                raise SmokeError(f"segment {key} decodes to no frame")
            total += frames
            print(f"ok: segment {key.rsplit('/', 1)[-1]}: {len(data)} bytes, {frames} frame(s), "
                  f"{width}x{height}")
        print(f"ok: {binary.name} recorded {seconds:g} s: {len(objects)} segment(s), "
              f"{total} frame(s), all verified and decodable")
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dist", type=Path, default=HERE / "dist", help="where the build put them")
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to record")
    args = parser.parse_args(argv)
    try:
        build_script = load_build_script()
        programs = build_script.executables(sys.platform)
        with tempfile.TemporaryDirectory(prefix="bucketreel-smoke-") as tmp:
            for exe in programs:
                binary = args.dist.resolve() / exe.file_name(sys.platform)
                if not binary.is_file():
                    raise SmokeError(f"{binary} is missing: build it with build/build_agent.py")
                check_version(binary, exe.console, agent_env(Path(tmp) / "version"))
            console = args.dist.resolve() / programs[0].file_name(sys.platform)
            check_capture(console, args.seconds, Path(tmp) / "agent-home")
    except (SmokeError, subprocess.TimeoutExpired) as err:
        print(f"smoke_binary: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
