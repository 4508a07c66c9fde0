"""Scenario files: the four packaged stories validate; a malformed file names the file, field and problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sopgraph.scenarios import (
    SCENARIO_DIR,
    ScenarioError,
    load_scenario,
    packaged_scenarios,
)


def test_the_four_stories_are_packaged_and_valid() -> None:
    assert packaged_scenarios() == ["casting", "court", "philosophers", "succession"]
    for name in packaged_scenarios():
        scenario = load_scenario(name)
        assert 4 <= len(scenario.characters) <= 6 and scenario.principals
        assert load_scenario(SCENARIO_DIR / f"{name}.yaml") == scenario
    assert len(load_scenario("philosophers").characters) == 4  # sized for the embedded model
    assert load_scenario("court").settings.winner.kind == "judge"
    assert load_scenario("succession").settings.winner.kind == "weighted_threshold"


def write(tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load((SCENARIO_DIR / "philosophers.yaml").read_text())
    edit(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["characters"][1]["beliefs"].update({"Machines can be minds": 150}),
            r"characters\[bruno\]\.beliefs\.Machines can be minds: Input should be less than or equal to 100",
        ),
        (
            lambda d: d["resources"][0].update({"owner": "zed"}),
            r"resources\[journal\]\.owner: 'zed' is not a character id",
        ),
        (lambda d: d["characters"][0].pop("scratch"), r"characters\[aria\]\.scratch: Field required"),
        (
            lambda d: d["characters"][2].update({"id": "Chen Yu"}),
            r"characters\[Chen Yu\]\.id: String should match pattern",
        ),
        (lambda d: d["characters"][3].update({"id": "aria"}), r"characters: duplicate id aria"),
        (
            lambda d: d["settings"].update({"rounds": 0}),
            r"settings\.rounds: Input should be greater than or equal to 1",
        ),
        (lambda d: d["settings"].update({"colour": "blue"}), r"settings\.colour: Extra inputs are not permitted"),
        (
            lambda d: [c.update({"principal": False}) for c in d["characters"]],
            r"at least one character must be principal",
        ),
        (
            lambda d: d["settings"]["winner"].update({"kind": "judge", "judge": "nobody"}),
            r"settings\.winner\.judge: 'nobody'",
        ),
        (
            lambda d: d["settings"].update({"vote_rules": ["own_self"]}),
            r"settings\.winner\.vote_rule: own_noself is not one of",
        ),
    ],
)
def test_a_malformed_scenario_names_file_field_and_problem(tmp_path: Path, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, edit)
    with pytest.raises(ScenarioError, match=expected) as info:
        load_scenario(path)
    assert str(path) in str(info.value)


def test_unreadable_scenarios(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\ncharacters: [\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml: not valid YAML at line \d"):
        load_scenario(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ScenarioError, match="expected a mapping"):
        load_scenario(listy)
    with pytest.raises(ScenarioError, match=r"no such scenario file \(packaged stories: casting, court"):
        load_scenario("atlantis")
