"""The container tier: the box image started from containers/compose.yaml with pytest-docker,
driven by the real `lager` client on the host.

In CI (CI=true) a missing Docker engine fails this tier; elsewhere it is skipped with a reason.
pytest-docker's cleanup (`down -v`) removes the containers, network and volume even when a test
fails.
"""
from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Client, write_script
from scenarios import run_spec_example

# Building the image on a fresh machine (debootstrap) takes minutes, inside the first test.
pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "lager-box:test"


def _docker_problem() -> str | None:
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if probe.returncode == 0 else (probe.stderr.strip().splitlines() or ["?"])[-1]


@pytest.fixture(scope="session")
def box_image() -> str:
    problem = _docker_problem()
    if problem is not None:
        message = f"no Docker engine ({problem}); start one with scripts/docker-up.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(f"container tier cannot run in CI: {message}", pytrace=False)
        pytest.skip(message)
    build = subprocess.run(["bash", str(ROOT / "containers" / "build.sh"), IMAGE],
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stderr
    return IMAGE


@pytest.fixture(scope="session")
def laptop(tmp_path_factory: pytest.TempPathFactory) -> Client:
    """A laptop config dir with lager's own key, made before the box starts."""
    from client.config import Config

    config = tmp_path_factory.mktemp("container-laptop")
    Config(config).ensure_default_key()
    return Client(config, agent=None)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def box_env(box_image: str, laptop: Client) -> Iterator[dict[str, str]]:
    env = {"LAGER_BOX_IMAGE": box_image, "LAGER_BOX_PUBLISH": f"127.0.0.1:{_free_port()}",
           "LAGER_BOX_NAME": "mybox",
           "LAGER_BOX_AUTHORIZED_KEYS": laptop.key_path.with_suffix(".pub").read_text()}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # docker-compose reads these when pytest-docker runs it
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    return "docker-compose"  # v1: what Debian ships


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(ROOT / "containers" / "compose.yaml")


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return f"lagertest{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def docker_setup(box_env: dict[str, str]) -> list[str]:
    return ["up -d"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["down -v --remove-orphans"]


def _ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


@pytest.fixture(scope="session")
def box(docker_services, box_env: dict[str, str], laptop: Client) -> Client:
    port = int(box_env["LAGER_BOX_PUBLISH"].rsplit(":", 1)[1])
    docker_services.wait_until_responsive(check=lambda: _ssh_banner(port), timeout=120,
                                          pause=0.5)
    added = laptop.run("boxes", "add", "mybox", "--host", "127.0.0.1", "--port", str(port),
                       box=False)
    assert added.returncode == 0 and "box mybox is ready" in added.stdout, added
    laptop.port = port  # type: ignore[attr-defined]
    return laptop


def compose(docker_services, command: str) -> str:
    out = docker_services._docker_compose.execute(command)
    return out.decode() if isinstance(out, bytes) else str(out)


def test_spec_example_continue_console_and_bench_in_container(box: Client,
                                                              tmp_path: Path) -> None:
    run_spec_example(box, tmp_path)


def test_scripts_run_apart_from_the_agent(box: Client, tmp_path: Path) -> None:
    """Privilege separation in the image (issue 10): the agent is root so that each script
    runs under a uid of its own, which cannot read the host key or the box keys."""
    script = write_script(tmp_path, "who.py", """
import os
print(os.getuid())
for name in ("ssh_host_ed25519_key", "authorized_keys"):
    try:
        open(f"/var/lib/lager-box/{name}").read()
        print(name, "READABLE")
    except PermissionError:
        print(name, "denied")
""")
    result = box.run("python", str(script))
    assert result.returncode == 0, result.stderr
    uid, *lines = result.stdout.split("\n")
    assert int(uid) >= 1_000_000, result.stdout  # a run's own uid from the reserved range
    assert lines[:2] == ["ssh_host_ed25519_key denied", "authorized_keys denied"]


def test_short_script_and_exit_code(box: Client, tmp_path: Path) -> None:
    script = write_script(tmp_path, "x.py", "import sys\nprint('in the box')\nsys.exit(3)\n")
    result = box.run("python", str(script))
    assert result.returncode == 3 and result.stdout == "in the box\n"


def test_restart_keeps_host_key_and_fresh_volume_is_refused(box: Client,
                                                            docker_services) -> None:
    port = box.port  # type: ignore[attr-defined]
    compose(docker_services, "restart box")
    docker_services.wait_until_responsive(check=lambda: _ssh_banner(port), timeout=120,
                                          pause=0.5)
    again = box.run("python", "--list")
    assert again.returncode == 0, again.stderr  # same host key from the state volume

    compose(docker_services, "down -v")
    compose(docker_services, "up -d")
    docker_services.wait_until_responsive(check=lambda: _ssh_banner(port), timeout=120,
                                          pause=0.5)
    refused = box.run("python", "--list")
    assert refused.returncode == 255 and "HOST KEY CHANGED" in refused.stderr
