"""The main job on embedded defaults, on one machine: record this screen into a bucket.

Starts a local development bucket (moto's S3 server on loopback — not AWS), a broker on
SQLite, and a virtual display when there is none; sets up a tenant and an employee with the
broker's own admin commands; enrolls an agent with a one-time code; records about 20 seconds;
then prints where every segment landed and a short-lived view URL that plays the first one.
With `--serve` it then keeps the bucket and the broker running until Ctrl+C and prints the
pages' address with an admin's, a manager's and the employee's sign-in (email, password, the
TOTP key as text and a current code), so the product can be opened in a browser.
Everything it starts is stopped by PID when it ends. Run through `bash scripts/demo.sh`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
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


@dataclass(frozen=True)
class SignIn:
    role: str
    email: str
    password: str
    totp_key: str


def enroll_totp(http: urllib3.PoolManager, broker_url: str, email: str, password: str) -> str:
    """Sign in once through the API, enrolling TOTP, and return the key: then the person
    signs in in a browser with the key (or the printed code) instead of scanning a QR code.
    The enrolment uses the code of the step before now (the broker accepts one step either
    side), so the code of the current step still works once."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = http.request(
            "POST", broker_url + path, body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        data: dict[str, Any] = json.loads(reply.data or b"{}")
        if reply.status != 200:
            raise SystemExit(f"demo: signing in {email} failed: {reply.status} {data}")
        return data

    step = post("/api/v1/auth/login", {"tenant": "demo", "email": email, "password": password})
    key = parse_qs(urlsplit(step["provisioning_uri"]).query)["secret"][0]
    totp = pyotp.TOTP(key)
    post("/api/v1/auth/mfa", {
        "challenge": step["challenge"], "code": totp.at(time.time() - totp.interval),
    })
    return str(key)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(broker_url: str, people: list[SignIn]) -> None:
    """Print the sign-ins and wait for Ctrl+C (or SIGTERM)."""
    say(f"\nbucketreel is running: open {broker_url}/signin  (organisation: demo)")
    for who in people:
        say(
            f"  {who.role:<8} {who.email:<20} password {who.password}  TOTP key {who.totp_key}"
            f"  code now {pyotp.TOTP(who.totp_key).now()}"
        )
    say(
        "a code works once and changes every 30 s; for a fresh one add the key to an "
        "authenticator app, or run:\n"
        f"  {BIN / 'python'} -c \"import pyotp; print(pyotp.TOTP('<TOTP key>').now())\"\n"
        "the bucket (moto, on loopback) and the broker keep running: press Ctrl+C to stop"
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to record")
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--segment-seconds", type=float, default=10.0)
    parser.add_argument(
        "--serve", action="store_true",
        help="then keep the bucket and the broker running until Ctrl+C and print sign-ins "
        "for an admin, a manager and the employee, to open the pages in a browser",
    )
    parser.add_argument(
        "--work", type=Path, default=ROOT / ".demo",
        help="the demo's own directory, emptied first (default: .demo in the repository)",
    )
    args = parser.parse_args()

    work = args.work
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
        employee = "ann@demo.example"
        user = broker.admin(
            "create-user",
            "--tenant",
            "demo",
            "--email",
            employee,
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
        say(f"tenant {tenant}, employee {employee} ({user}); one-time enrollment code issued")

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
        if args.serve:
            people = [SignIn("employee", employee, password, enroll_totp(
                http, broker.url, employee, password))]
            for role, email in (("admin", "ada@demo.example"), ("manager", "max@demo.example")):
                secret = secrets.token_urlsafe(18)
                broker.admin(
                    "create-user", "--tenant", "demo", "--email", email, "--role", role,
                    stdin=secret + "\n",
                )
                people.insert(-1, SignIn(role, email, secret, enroll_totp(
                    http, broker.url, email, secret)))
            broker.admin(
                "assign", "--tenant", "demo", "--manager", "max@demo.example",
                "--employee", employee,
            )
            serve(broker.url, people)
        elif sys.stdin.isatty():
            input(
                "the bucket and the broker stay up so the URL can be opened: press Enter to stop "
            )
        say("stopping everything this demo started")
    return 0


if __name__ == "__main__":
    sys.exit(main())
