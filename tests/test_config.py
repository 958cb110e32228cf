from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from weaksam.config import ConfigError, load_config, load_config_file, section_digest

REPO = Path(__file__).resolve().parents[1]


def minimal(**dataset: object) -> dict[str, object]:
    return {"dataset": {"name": "x", "format": "shapes", **dataset}}


def test_embedded_and_example_configs_validate() -> None:
    configs = [p for p in (REPO / "config").glob("*.yaml") if p.name != "schema.yaml"]
    assert {"config.yaml", "voc07.yaml", "coco14.yaml"} <= {p.name for p in configs}
    for path in [*configs, *(REPO / "config" / "examples").glob("*.yaml")]:
        cfg = load_config_file(path)
        assert cfg.dataset.name


def _merge(base: dict[str, object], over: dict[str, object]) -> dict[str, object]:
    out = dict(base)
    for k, v in over.items():
        old = out.get(k)
        out[k] = _merge(old, v) if isinstance(old, dict) and isinstance(v, dict) else v
    return out


def test_overlays_validate_on_top_of_the_embedded_config() -> None:
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    overlays = sorted((REPO / "config" / "overlays").glob("*.yaml"))
    assert overlays
    for path in overlays:
        cfg = load_config(_merge(base, yaml.safe_load(path.read_text())))
        assert cfg.dataset.name == "demo"


def test_defaults_are_filled_and_frozen() -> None:
    cfg = load_config(minimal())
    assert cfg.dataset.train_split == "trainval"
    assert cfg.dataset.shapes.classes == ("circle", "triangle", "square", "star", "cross")
    assert cfg.evaluation.recall_n == (10, 100, 300, 1000)
    with pytest.raises(AttributeError):
        cfg.dataset.name = "y"  # type: ignore[misc]


def test_unknown_key_names_its_path() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.shapes.*'sed' was unexpected"):
        load_config(minimal(shapes={"sed": 1}))


def test_wrong_type_names_key_and_expected_type() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(minimal(shapes={"num_test": "ten"}))
    assert "dataset.shapes.num_test" in str(err.value)
    assert "integer" in str(err.value)


def test_wrong_enum_and_top_level_key() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.on_bad_image"):
        load_config(minimal(on_bad_image="ignore"))
    with pytest.raises(ConfigError, match=r"<top level>.*'wsodd' was unexpected"):
        load_config({**minimal(), "wsodd": {}})


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="min_objects"):
        load_config(minimal(shapes={"min_objects": 4, "max_objects": 2}))
    with pytest.raises(ConfigError, match=r"dataset\.root"):
        load_config({"dataset": {"name": "v", "format": "voc"}})
    with pytest.raises(ConfigError, match="equal"):
        load_config(minimal(train_split="a", test_split="a"))


def test_section_digest_changes_with_values() -> None:
    a = load_config(minimal()).dataset.shapes
    b = load_config(minimal(shapes={"seed": 1})).dataset.shapes
    assert section_digest(a) == section_digest(load_config(minimal()).dataset.shapes)
    assert section_digest(a) != section_digest(b)


def test_conda_env_pins_match_requirements() -> None:
    req = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            req[name] = version
    env = yaml.safe_load((REPO / "envs" / "weaksam.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = dict(p.split("==") for p in pip if re.match(r"^[\w.-]+==", p))
    dev = {"ruff", "snakefmt", "pytest", "mypy"}
    assert pins == {k: v for k, v in req.items() if k not in dev}
