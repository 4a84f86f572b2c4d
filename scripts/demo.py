"""The main job on embedded defaults, on one machine: record this screen into a bucket.

Starts a local development bucket (moto's S3 server on loopback — not AWS), a broker on
SQLite, and a virtual display when there is none; sets up a tenant and an employee with the
broker's own admin commands; enrolls an agent with a one-time code; records about 20 seconds;
then prints where every segment landed and a short-lived view URL that plays the first one.
Everything it starts is stopped by PID when it ends. Run through `bash scripts/demo.sh`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import urllib3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.broker import BrokerProcess  # noqa: E402
from tests.support.display import run_xvfb  # noqa: E402
from tests.support.s3 import run_moto  # noqa: E402

BIN = Path(sys.executable).parent


def say(text: str) -> None:
    print(text, flush=True)


def usable_display() -> str | None:
    display = os.environ.get("DISPLAY")
    if not display:
        return None
    probe = (
        subprocess.run(
            ["xsetroot", "-display", display, "-def"], capture_output=True, check=False, timeout=10
        )
        if shutil.which("xsetroot")
        else None
    )
    return display if probe is None or probe.returncode == 0 else None


def agent(*args: str, home: Path, display: str) -> list[str]:
    """Run the agent; show its lines as they come and return them."""
    process = subprocess.Popen(
        [str(BIN / "bucketreel-agent"), *args],
        # text: its lines are shown to a person, as on a terminal (piped, it would log JSON)
        env={**os.environ, "BUCKETREEL_AGENT_HOME": str(home), "DISPLAY": display,
             "BUCKETREEL_AGENT_LOG_FORMAT": "text"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        say(f"  agent | {lines[-1]}")
    if process.wait() != 0:
        raise SystemExit(f"demo: bucketreel-agent {args[0]} failed (exit {process.returncode})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to record")
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--segment-seconds", type=float, default=10.0)
    args = parser.parse_args()

    work = ROOT / ".demo"
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    os.chmod(work, 0o700)

    with ExitStack() as stack:
        s3 = stack.enter_context(run_moto(log_dir=work / "logs"))
        bucket = s3.create_bucket("bucketreel-demo")
        say(f"local development bucket (moto's S3 server, NOT AWS): {s3.url}/{bucket}")

        broker = stack.enter_context(
            BrokerProcess(
                f"sqlite+aiosqlite:///{work / 'broker.db'}",
                log_dir=work / "logs",
                extra_env={"BUCKETREEL_VIEW_URL_TTL": "120"},
            )
        )
        say(f"broker on SQLite: {broker.url}  (database {work / 'broker.db'})")

        display = usable_display()
        if display is None:
            xvfb = stack.enter_context(run_xvfb(1280, 720, log_dir=work / "logs"))
            display = xvfb.display
            say(f"no usable $DISPLAY: recording a virtual display (Xvfb {display}, animated)")
        else:
            say(f"recording your display {display}")

        tenant = broker.admin("create-tenant", "demo")["tenant_id"]
        password = secrets.token_urlsafe(18)
        user = broker.admin(
            "create-user",
            "--tenant",
            "demo",
            "--email",
            "ann@demo.example",
            "--role",
            "employee",
            stdin=password + "\n",
        )["user_id"]
        stored = broker.admin(
            "set-storage",
            "--tenant",
            "demo",
            "--bucket",
            bucket,
            "--region",
            s3.region,
            "--endpoint-url",
            s3.url,
            "--prefix",
            "bucketreel",
            "--access-key-id",
            s3.access_key_id,
            "--accept-risk",  # a local dev bucket (moto, no IAM): every right, knowingly
            stdin=s3.secret_access_key + "\n",
        )
        findings = [f["name"] for f in stored.get("check", {}).get("findings", [])]
        if findings:
            say(
                "storage self-check findings accepted for this local dev bucket only (moto has "
                f"no IAM here, so the broker may do everything): {', '.join(findings)}"
            )
        code = broker.admin("enrollment-code", "--tenant", "demo", "--user", user)["code"]
        say(f"tenant {tenant}, employee ann@demo.example ({user}); one-time enrollment code issued")

        home = work / "agent"
        agent(
            "enroll",
            "--broker",
            broker.url,
            "--code",
            code,
            "--name",
            "demo-workstation",
            home=home,
            display=display,
        )
        say(f"agent enrolled (credential in {home / 'device.json'}, mode 0600)")
        say(
            f"recording {args.seconds:g} s at {args.fps:g} fps in {args.segment_seconds:g} s "
            "segments ..."
        )
        lines = agent(
            "run",
            "--fps",
            str(args.fps),
            "--segment-seconds",
            str(args.segment_seconds),
            "--duration",
            str(args.seconds),
            home=home,
            display=display,
        )
        recording_id = next(line.split()[1] for line in lines if line.startswith("recording "))
        credential: dict[str, Any] = json.loads((home / "device.json").read_text())
        http = urllib3.PoolManager()
        info = json.loads(
            http.request(
                "GET",
                f"{broker.url}/api/v1/recordings/{recording_id}",
                headers={"Authorization": f"Bearer {credential['access_token']}"},
            ).data
        )
        say(f"\nrecording {recording_id}: {info['state']}, {len(info['segments'])} segment(s)")
        for segment in info["segments"]:
            say(
                f"  s3://{bucket}/{segment['key']}  {segment['size']:>9} bytes  "
                f"{segment['duration_ms'] / 1000:5.1f} s  {segment['state']}"
            )
        view = broker.admin(
            "view-url", "--tenant", "demo", "--recording", recording_id, "--seq", "0"
        )
        played = http.request("GET", view["url"])
        say(
            f"\nview URL for segment 0 (valid until {view['expires_at']}; "
            f"checked: HTTP {played.status}, {len(played.data)} bytes of video/mp4):"
        )
        say(view["url"])
        out = work / "segment-0.mp4"
        out.write_bytes(played.data)
        say(f"\na copy of segment 0, fetched through that URL, is in {out}")
        if sys.stdin.isatty():
            input(
                "the bucket and the broker stay up so the URL can be opened: press Enter to stop "
            )
        say("stopping everything this demo started")
    return 0


if __name__ == "__main__":
    sys.exit(main())
