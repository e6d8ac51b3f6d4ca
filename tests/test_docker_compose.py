"""docker-compose.yml parses, and every command, module and path it names exists in the repo."""

import importlib.util
import re

import yaml

from tests.conftest import REPO_ROOT


def load_compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_services_and_volumes():
    compose = load_compose()
    assert {"postgres", "redis", "web", "worker", "maintenance", "flower"} <= set(compose["services"])
    assert {"postgres-data", "duda-data", "datasets"} <= set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name} mounts undeclared volume {source}"


def test_worker_reserves_a_gpu():
    devices = load_compose()["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_every_command_names_something_that_exists():
    compose = load_compose()
    commands = 0
    for service in compose["services"].values():
        if "build" in service:
            assert (REPO_ROOT / service["build"] / "Dockerfile").is_file()
        command = " ".join(service.get("command", []))
        for management_command in re.findall(r"manage\.py (\w+)", command):
            commands += 1
            builtin = management_command in ("migrate", "collectstatic")
            ours = REPO_ROOT / "webapp" / "core" / "management" / "commands" / f"{management_command}.py"
            assert builtin or ours.is_file(), f"no management command {management_command}"
        for module in re.findall(r"-A (\S+)", command):
            commands += 1
            assert importlib.util.find_spec(module) is not None, f"no module {module}"
    assert commands >= 4


def test_dockerfile_copies_paths_that_exist():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+)", dockerfile, flags=re.M):
        if source != ".":
            assert (REPO_ROOT / source).exists(), f"Dockerfile copies missing {source}"
