"""environment.yml (conda) and pyproject.toml must name the same packages at the same versions."""
import re
import tomllib

import yaml
from conftest import REPO

CONDA_TO_PIP = {"pytorch": "torch", "python-graphviz": "graphviz"}
CONDA_ONLY = {"python", "pip", "graphviz"}  # the interpreter, pip, and the `dot` binary package


def _pip_pins(reqs):
    out = {}
    for r in reqs:
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*==\s*([^;\s]+)", r)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_environment_yml_matches_pyproject():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pip = _pip_pins(py["dependencies"] + py["optional-dependencies"]["dev"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda, pip_section = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_section.update(_pip_pins(dep["pip"]))
            continue
        name, _, ver = dep.partition("=")
        if name in CONDA_ONLY:
            continue
        conda[CONDA_TO_PIP.get(name, name).lower()] = ver
    both = {**conda, **pip_section}
    assert both == pip, f"differences: {set(both.items()) ^ set(pip.items())}"
    assert pip["torch"] == "2.13.0"
    assert "torchvision" not in both
