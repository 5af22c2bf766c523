"""deploy/: what can be checked without Docker or GPUs. The compose file parses and wires vLLM (with
runtime LoRA loading), two Genesys replicas, PostgreSQL, Chroma, Prometheus and Grafana as the README
says; the replicas' environment loads as Genesys settings (unknown keys are errors there); Prometheus
and Grafana configs parse and point at what the compose file mounts; the accelerate config loads with
accelerate's own loader; `docker compose config` validates the file where Docker Compose is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
REPLICAS = ("genesys-a", "genesys-b")
# What a filled-in deploy/.env holds (deploy/env.example lists the names).
SAMPLE_ENV = {
    "GENESYS_MODEL_DIR": "/srv/models/SmolLM2-135M-Instruct",
    "POSTGRES_PASSWORD": "pg-secret-for-the-test",
    "GENESYS_AUTH__KEYS": json.dumps(
        [
            {"name": "ide", "role": "user", "key": "k-ide-0123456789abcdef"},
            {"name": "prometheus", "role": "operator", "key": "k-prom-0123456789abcdef"},
        ]
    ),
    "GRAFANA_ADMIN_PASSWORD": "grafana-secret",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` (enough for this file)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return _VARIABLE.sub(one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's short-syntax volumes."""
    out = {}
    for entry in service.get("volumes", []):
        parts = interpolate(entry, SAMPLE_ENV).split(":")
        out[parts[1]] = parts[0]
    return out


def test_the_compose_file_has_every_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"vllm", *REPLICAS, "postgres", "chroma", "prometheus", "grafana"}
    # The anchor merged into both replicas: same image, same environment, different host ports.
    for name in REPLICAS:
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert services[name]["environment"] == services[REPLICAS[0]]["environment"]
    ports = [services[name]["ports"][0] for name in REPLICAS]
    assert len({interpolate(p, {}).split(":")[-2] for p in ports}) == 2
    for source in (DEPLOY / "Dockerfile").read_text().splitlines():
        if source.startswith("COPY "):
            for path in source.split()[1:-1]:
                assert (REPO / path).exists(), f"the Dockerfile copies {path}, which is not in the repository"


def test_vllm_serves_lora_adapters_that_genesys_loads_at_run_time(compose: dict[str, Any]) -> None:
    services = compose["services"]
    vllm = services["vllm"]
    args = [interpolate(a, {}) for a in vllm["command"]]
    assert "--enable-lora" in args
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    flags = dict(a.removeprefix("--").split("=", 1) for a in args if "=" in a)
    assert int(flags["max-lora-rank"]) >= 16  # the trainer's default rank
    env = services["genesys-a"]["environment"]
    assert env["GENESYS_MODEL__ENGINE"] == "vllm"
    assert env["GENESYS_MODEL__VLLM__SERVED_MODEL"] == flags["served-model-name"]
    assert env["GENESYS_MODEL__VLLM__BASE_URL"] == f"http://vllm:{flags['port']}/v1"
    # Genesys hands vLLM an adapter's path under its data dir: vLLM must see the same volume there,
    # and the base model the replicas train on.
    data_dir = env["GENESYS_DATA_DIR"]
    replica_volumes, vllm_volumes = volume_targets(services["genesys-a"]), volume_targets(vllm)
    assert replica_volumes[data_dir] == vllm_volumes[data_dir] == "genesys-data"
    assert flags["model"] == env["GENESYS_MODEL__PATH"]
    assert replica_volumes[flags["model"]] == vllm_volumes[flags["model"]]


def test_the_replicas_environment_loads_as_genesys_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.engine import make_url

    from genesys.runtime.settings import load_settings

    env = {
        k: interpolate(str(v), SAMPLE_ENV) for k, v in compose["services"]["genesys-a"]["environment"].items()
    }
    for var in list(os.environ):
        if var.startswith("GENESYS_"):
            monkeypatch.delenv(var)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()

    assert settings.model.engine == "vllm" and settings.autogen_agents.schedule
    assert settings.storage.chroma_url == "http://chroma:8000"
    url = make_url(settings.database_url)
    assert (url.get_backend_name(), url.get_driver_name(), url.host) == ("postgresql", "psycopg", "postgres")
    assert url.password == SAMPLE_ENV["POSTGRES_PASSWORD"]
    url.get_dialect()  # the driver (psycopg) is installed
    postgres = compose["services"]["postgres"]["environment"]
    assert (url.username, url.database) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
    assert {k.name for k in settings.auth.keys} == {"ide", "prometheus"}
    # A missing secret is refused by name, not defaulted.
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"], {})


def test_the_chroma_service_is_the_server_the_replicas_name(compose: dict[str, Any]) -> None:
    chroma = compose["services"]["chroma"]
    assert chroma["command"][:2] == ["chroma", "run"]
    port = chroma["command"][chroma["command"].index("--port") + 1]
    assert (
        compose["services"]["genesys-a"]["environment"]["GENESYS_STORAGE__CHROMA_URL"]
        == f"http://chroma:{port}"
    )


def test_prometheus_scrapes_every_replica_with_an_operator_key(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for group in jobs["genesys"]["static_configs"] for t in group["targets"]]
    assert sorted(targets) == sorted(f"{name}:8000" for name in REPLICAS)
    assert jobs["genesys"]["metrics_path"] == "/metrics"
    key_file = jobs["genesys"]["authorization"]["credentials_file"]
    assert key_file in volume_targets(compose["services"]["prometheus"])
    assert [t for group in jobs["vllm"]["static_configs"] for t in group["targets"]] == ["vllm:8001"]


def test_grafana_is_provisioned_with_the_genesys_dashboards(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = volume_targets(grafana)
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert (DEPLOY / mounts["/etc/grafana/provisioning"]).resolve() == provisioning
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "genesys.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    dashboards = (DEPLOY / mounts[path]).resolve()
    assert dashboards == REPO / "configs" / "grafana"
    found = sorted(dashboards.glob("*.json"))
    assert found, "configs/grafana holds no dashboard"
    for dashboard in found:
        assert json.loads(dashboard.read_text())["panels"]


def test_the_accelerate_config_loads_with_accelerate(compose: dict[str, Any]) -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    path = DEPLOY / "accelerate" / "multi_gpu.yaml"
    config = load_config_from_file(str(path))  # refuses unknown keys
    assert config.distributed_type == DistributedType.MULTI_GPU
    assert config.num_machines == 1 and config.num_processes >= 2
    assert str(config.mixed_precision) == "no"
    # Mounted where `accelerate launch` looks for its default config (HF_HOME unset: ~/.cache/huggingface).
    mounts = volume_targets(compose["services"]["genesys-a"])
    assert mounts["/root/.cache/huggingface/accelerate/default_config.yaml"] == "./accelerate/multi_gpu.yaml"


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_validates_the_file(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip(
            "Docker Compose is not installed here (`docker compose version` fails); the YAML checks ran"
        )
    env_file = tmp_path / "deploy.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in SAMPLE_ENV.items()))
    result = subprocess.run(
        [
            *command,
            "--env-file",
            str(env_file),
            "-f",
            str(DEPLOY / "docker-compose.yml"),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=DEPLOY,
    )
    assert result.returncode == 0, result.stderr
