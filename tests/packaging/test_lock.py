"""constraints.txt pins every requirement pyproject.toml names, inside its range.

When this fails after a dependency was added or changed, run `scripts/lock.sh` and commit
constraints.txt with pyproject.toml.
"""

from __future__ import annotations

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.docs.markdown import ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib  # type: ignore[no-redef]

pytestmark = pytest.mark.unit


def pins() -> dict[str, str]:
    """Name -> version of every pin that applies to this interpreter."""
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(default_environment()):
                found[canonicalize_name(req.name)] = next(iter(req.specifier)).version
    return found


def test_every_requirement_of_every_extra_is_pinned_inside_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for extra in project["optional-dependencies"].values()
               for r in extra]
    locked = pins()
    missing = [str(r) for r in wanted if canonicalize_name(r.name) not in locked]
    assert missing == [], "not in constraints.txt; run scripts/lock.sh"
    outside = [f"{r} (locked {locked[canonicalize_name(r.name)]})" for r in wanted
               if not r.specifier.contains(locked[canonicalize_name(r.name)], prereleases=True)]
    assert outside == [], "pinned outside the range; run scripts/lock.sh"
