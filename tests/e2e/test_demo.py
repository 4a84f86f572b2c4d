"""`scripts/demo.py --serve`: it records, then keeps the bucket and the broker up and prints
sign-ins that work (password and the printed TOTP code), until Ctrl+C stops everything."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pyotp
import pytest
import urllib3

from tests.support.api import Api
from tests.support.display import XDisplay

ROOT = Path(__file__).resolve().parents[2]
RUNNING = re.compile(r"bucketreel is running: open (http://\S+)/signin")
SIGN_IN = re.compile(
    r"^\s+(admin|manager|employee)\s+(\S+)\s+password (\S+)\s+TOTP key (\S+)\s+code now (\d{6})"
)


def test_the_demo_serves_the_pages_with_working_sign_ins(
    xvfb: XDisplay, tmp_path: Path
) -> None:
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--serve", "--seconds", "3",
         "--segment-seconds", "1.5", "--work", str(tmp_path / "demo")],
        env={**os.environ, "DISPLAY": xvfb.display}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))
            if "press Ctrl+C to stop" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(180), "the demo never said it is serving:\n" + "\n".join(lines)
        (url,) = [m[1] for line in lines if (m := RUNNING.search(line))]
        people = {m[1]: m.groups()[1:] for line in lines if (m := SIGN_IN.match(line))}
        assert set(people) == {"admin", "manager", "employee"}, lines
        api = Api(url)
        tokens = {}
        for role, (email, password, key, code) in people.items():
            step = api.call(
                "POST", "/api/v1/auth/login",
                {"tenant": "demo", "email": email, "password": password},
            )
            assert step.status == 200, step.body
            assert step.body["mfa"] == "totp", "TOTP is enrolled already: the key is the one"
            assert pyotp.TOTP(key).verify(code, valid_window=1), "the code is the key's"
            done = api.call(  # the printed code itself works (once)
                "POST", "/api/v1/auth/mfa", {"challenge": step.body["challenge"], "code": code}
            )
            assert done.status == 200, (role, done.body)
            tokens[role] = done.body["access_token"]
        watched = api.call("GET", "/api/v1/employees", token=tokens["manager"])
        assert [e["email"] for e in watched.body["employees"]] == [people["employee"][0]]
        assert api.call("GET", "/admin/organisation", token=tokens["admin"]).status == 200
        assert any("s3://" in line and "verified" in line for line in lines), lines
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(60)
        reader.join(10)
        if demo.stdout is not None:
            demo.stdout.close()
    assert code == 0, "\n".join(lines)
    assert "stopping everything this demo started" in lines[-1]
    with pytest.raises(urllib3.exceptions.NewConnectionError, match="refused"):
        Api(url).call("GET", "/healthz")  # the broker it started is gone
