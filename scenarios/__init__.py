"""The group-chat stories: the packaged YAML files beside this module, and the code that finds and loads them.

The story's schema (`Scenario`) is checkpointed with every run, so it lives in `sopgraph.state.groupchat`;
this package only turns a name or a path into one, with errors that name the file, the field and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sopgraph.state.datafile import read_mapping, validate
from sopgraph.state.groupchat import Scenario

SCENARIO_DIR = Path(__file__).resolve().parent
"""Where the packaged stories are (`succession.yaml` is the story `succession`)."""


class ScenarioError(ValueError):
    """A scenario file cannot be used; the message names the file, the field and the problem."""


def scenario_path(name_or_path: str | Path) -> Path:
    """A packaged story by name (`succession`) or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        return path
    return SCENARIO_DIR / f"{name_or_path}.yaml"


def packaged_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    return validate(Scenario, data, source, ScenarioError)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read and validate a scenario; ScenarioError names the file, field and problem."""
    if not str(name_or_path).strip():
        raise ScenarioError(
            f"no scenario given: name a packaged story ({', '.join(packaged_scenarios())}) or a YAML file"
        )
    path = scenario_path(name_or_path)
    if not path.exists():
        known = ", ".join(packaged_scenarios())
        raise ScenarioError(f"{path}: no such scenario file (packaged stories: {known})")
    data = read_mapping(path, "title, rules, characters, resources, settings", ScenarioError)
    return parse_scenario(data, str(path))
