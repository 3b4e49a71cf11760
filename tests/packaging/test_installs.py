"""scripts/ensure-venv.sh retries a failed install and re-installs a changed dependency set.

Runs the real script in a temporary copy of a tiny project, offline: the "broken network" is a
package index on a closed 127.0.0.1 port, the "network back" is a local directory of wheels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.docs.markdown import ROOT
from tests.support.procs import free_port

TIMEOUT = 120


WHEEL_WRITER = """
import base64, hashlib, zipfile


def write_wheel(directory, name, requires=()):
    files = {
        f"{name}-1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: " + name
        + "\\nVersion: 1.0\\n" + "".join(f"Requires-Dist: {r}\\n" for r in requires),
        f"{name}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: test\\n"
        "Root-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = f"{name}-1.0.dist-info/RECORD"
    filename = f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(f"{directory}/{filename}", "w") as wheel:
        lines = []
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            lines.append(f"{path},sha256={digest.decode()},{len(data)}")
            wheel.writestr(path, data)
        wheel.writestr(record, "\\n".join(lines + [f"{record},,"]) + "\\n")
    return filename
"""

# A PEP 517 backend in the project itself, so building needs neither setuptools nor a network.
BACKEND = WHEEL_WRITER + """

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return write_wheel(wheel_directory, "proj", ["tinydep"])


build_editable = build_wheel
"""


def tiny_project(root: Path) -> None:
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "ensure-venv.sh", root / "scripts")
    (root / "backend.py").write_text(BACKEND)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        '[project]\nname = "proj"\nversion = "1.0"\ndependencies = ["tinydep"]\n')
    (root / "constraints.txt").write_text("tinydep==1.0\n")


def run(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["scripts/ensure-venv.sh", "api"], cwd=project, env=env, text=True,
                          capture_output=True, timeout=TIMEOUT, check=False)


def test_a_failed_install_is_retried_and_a_changed_dependency_set_reinstalled(
        tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    namespace: dict[str, Any] = {}
    exec(WHEEL_WRITER, namespace)
    namespace["write_wheel"](str(wheels), "tinydep")
    project = tmp_path / "proj"
    tiny_project(project)
    closed_index = f"http://127.0.0.1:{free_port()}/simple"  # nothing listens: no network
    offline = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": closed_index,
               "PIP_RETRIES": "0", "PIP_TIMEOUT": "3", "PYTHON": sys.executable}
    offline.pop("PIP_FIND_LINKS", None)
    failed = run(project, offline)
    assert failed.returncode != 0, failed.stderr
    assert not list((project / ".venv").glob(".installed-*")), "no stamp after a failed install"

    back = {**offline, "PIP_FIND_LINKS": str(wheels), "PIP_NO_INDEX": "1"}
    first = run(project, back)
    assert first.returncode == 0, first.stderr
    assert "installing" in first.stderr
    assert (project / ".venv" / ".installed-api").is_file()
    again = run(project, back)
    assert again.returncode == 0 and "installing" not in again.stderr, "nothing to do twice"

    (project / "constraints.txt").write_text("tinydep==1.0\n# changed\n")
    changed = run(project, back)
    assert changed.returncode == 0 and "installing" in changed.stderr, changed.stderr
