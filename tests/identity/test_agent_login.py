"""`bucketreel-agent enroll --email`: an employee enrolls their workstation by signing in with
their password and a TOTP code at the terminal, against the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp

from tests.identity.people import PASSWORD, Client, Person, make_person, sign_in, step_now
from tests.support.api import Api, Tenant, now_iso
from tests.support.broker import BrokerProcess

AGENT = str(Path(sys.executable).with_name("bucketreel-agent"))


def enroll_by_login(
    broker: BrokerProcess, person: Person, home: Path
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [AGENT, "enroll", "--broker", broker.url, "--email", person.email,
         "--tenant", person.tenant.name, "--name", "laptop"],
        env={**os.environ, "BUCKETREEL_AGENT_HOME": str(home)},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def device_works(broker: BrokerProcess, home: Path) -> None:
    import json

    credential = json.loads((home / "device.json").read_text())
    reply = Api(broker.url).call(
        "POST", "/api/v1/recordings", {"started_at": now_iso()},
        token=credential["access_token"],
    )
    assert reply.status == 201, reply.body


def test_first_sign_in_enrolls_totp_and_the_device(
    broker: BrokerProcess, tenant: Tenant, tmp_path: Path
) -> None:
    person = make_person(broker, tenant)
    agent = enroll_by_login(broker, person, tmp_path)
    assert agent.stdin is not None
    assert agent.stderr is not None
    agent.stdin.write(PASSWORD + "\n")
    agent.stdin.flush()
    told = []
    for line in agent.stderr:  # the agent shows the key to add to an authenticator
        told.append(line)
        if "otpauth://" in line:
            break
    uri = next(line.strip() for line in told if "otpauth://" in line)
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    code = pyotp.TOTP(secret).generate_otp(step_now())
    out, err = agent.communicate(code + "\n", timeout=60)

    assert agent.returncode == 0, "".join(told) + err
    assert "enrolled: device" in out
    assert "recovery codes" in err
    assert PASSWORD not in out + err + "".join(told)
    assert code not in out
    assert (tmp_path / "device.json").stat().st_mode & 0o777 == 0o600
    device_works(broker, tmp_path)


def test_an_enrolled_person_signs_in_with_password_and_code(
    broker: BrokerProcess, client: Client, tenant: Tenant, tmp_path: Path
) -> None:
    person = sign_in(client, make_person(broker, tenant))
    agent = enroll_by_login(broker, person, tmp_path)
    out, err = agent.communicate(f"{PASSWORD}\n{person.next_code()}\n", timeout=60)

    assert agent.returncode == 0, err
    assert "otpauth://" not in err
    assert PASSWORD not in out + err
    device_works(broker, tmp_path)


def test_a_wrong_password_enrolls_nothing(
    broker: BrokerProcess, client: Client, tenant: Tenant, tmp_path: Path
) -> None:
    person = sign_in(client, make_person(broker, tenant))
    agent = enroll_by_login(broker, person, tmp_path)
    out, err = agent.communicate("not the password at all\n", timeout=60)

    assert agent.returncode == 1
    assert "email or password is wrong" in err
    assert "not the password at all" not in out + err
    assert not (tmp_path / "device.json").exists()


def test_email_needs_a_tenant(broker: BrokerProcess, tmp_path: Path) -> None:
    result = subprocess.run(
        [AGENT, "enroll", "--broker", broker.url, "--email", "a@example.test"],
        env={**os.environ, "BUCKETREEL_AGENT_HOME": str(tmp_path)},
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert "--email needs --tenant" in result.stderr
