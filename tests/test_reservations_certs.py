"""Shared boxes with user certificates, through asyncssh as the client: the holder is the
certificate's key id and principal, whatever key carries it; a plain key whose comment reads
like a certificate, logged in under the same name, is someone else."""
from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from conftest import LAGER_BOX, Agent, start_agent

RESERVED = 75


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Agent]:
    agent = start_agent(tmp_path / "state")
    try:
        yield agent
    finally:
        agent.stop()


def authorize(agent: Agent, *args: str) -> None:
    subprocess.run([LAGER_BOX, "authorize", "--state-dir", str(agent.state_dir), *args],
                   check=True, capture_output=True)


async def ask(agent: Agent, user: str, keys: list[object], subsystem: str,
              line: str) -> tuple[int, str, str]:
    async with asyncssh.connect(agent.host, agent.port, username=user, known_hosts=None,
                                client_keys=keys, agent_path=None, config=None) as conn:
        result = await conn.run(subsystem=subsystem, input=line + "\n", encoding="utf-8")
        return result.exit_status or 0, str(result.stdout), str(result.stderr)


def test_the_holder_is_the_certificate_key_id_and_principal(box: Agent, tmp_path: Path) -> None:
    ca = asyncssh.generate_private_key("ssh-ed25519", comment="team-ca")
    ca_pub = tmp_path / "ca.pub"
    ca.write_public_key(str(ca_pub))
    authorize(box, "--ca", str(ca_pub))

    def holder(key_id: str, principal: str) -> list[object]:
        key = asyncssh.generate_private_key("ssh-ed25519")
        cert = ca.generate_user_certificate(key, key_id, principals=[principal])
        return [(key, cert)]

    alice_laptop, alice_desktop = holder("alice-id", "alice"), holder("alice-id", "alice")
    bob = holder("bob-id", "bob")
    # A plain key that calls itself alice's certificate and logs in as alice.
    mimic = asyncssh.generate_private_key("ssh-ed25519", comment="certificate 'alice-id'")
    mimic_pub = tmp_path / "mimic.pub"
    mimic.write_public_key(str(mimic_pub))
    authorize(box, str(mimic_pub))

    async def scenario() -> None:
        code, out, err = await ask(box, "alice", alice_laptop, "reservation",
                                   json.dumps({"op": "lock", "label": "bob@bench",
                                               "reason": "cert test"}))
        assert code == 0, err
        lock = json.loads(out)["locked"]
        assert lock["identity"] == "cert:alice-id:alice"
        assert lock["name"] == "certificate 'alice-id'"
        change = json.dumps({"command": "supply", "net": "supply2", "action": "voltage",
                             "value": 2})
        for user, keys in (("bob", bob), ("alice", [mimic])):
            code, out, err = await ask(box, user, keys, "nets", change)
            assert code == RESERVED, (user, err)
            assert json.loads(out)["reserved"][0]["identity"] == "cert:alice-id:alice"
            assert "certificate 'alice-id'" in err and "bob@bench" in err
            code, _, err = await ask(box, user, keys, "reservation", '{"op": "unlock"}')
            assert code == RESERVED and "--force" in err
        # Another key with the same key id and principal is the same holder.
        code, out, err = await ask(box, "alice", alice_desktop, "nets", change)
        assert code == 0, err
        assert json.loads(out)["set_voltage"] == pytest.approx(2)
        code, out, err = await ask(box, "alice", alice_desktop, "reservation",
                                   '{"op": "unlock"}')
        assert (code, json.loads(out)["message"]) == (0, "unlocked"), err
        code, _, err = await ask(box, "bob", bob, "nets", change)
        assert code == 0, err

    asyncio.run(scenario())
