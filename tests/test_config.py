from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from weaksam.config import ConfigError, load_config, load_config_file

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
    for backbone, stride in (("vgg16_oicr", 16), ("efficientnet_lite0", 8)):
        with pytest.raises(ConfigError, match=r"wsod\.output_stride"):
            load_config({**minimal(), "wsod": {"backbone": backbone, "output_stride": stride}})
    with pytest.raises(ConfigError, match=r"proposals\.max_area_fraction"):
        load_config({**minimal(), "proposals": {"max_area_fraction": 1.5}})
    cfg = load_config({**minimal(), "proposals": {"max_area_fraction": 0.6}})
    assert cfg.proposals.max_area_fraction == 0.6
    assert load_config(minimal()).proposals.max_area_fraction is None  # METHOD.md: no cap


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


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        (
            "wsod",
            {"iterations": 100, "warmup_iterations": 5, "lr_steps": [80, 60]},
            r"wsod.lr_steps.*strictly increasing",
        ),
        (
            "wsod",
            {"iterations": 100, "warmup_iterations": 5, "lr_steps": [60, 60]},
            r"wsod.lr_steps.*strictly increasing",
        ),
        (
            "wsod",
            {"iterations": 100, "warmup_iterations": 5, "lr_steps": [60, 100]},
            r"wsod.lr_steps.*step 100 is not inside",
        ),
        ("retrain", {"iterations": 50, "warmup_iterations": 51}, r"retrain.warmup_iterations.*51"),
        ("cam", {"iterations": 10, "warmup_iterations": 20}, r"cam.warmup_iterations"),
        (
            "wsod",
            {
                "iterations": 100,
                "warmup_iterations": 5,
                "lr_steps": [50],
                "dropblock": {"lr_steps": [150]},
            },
            r"wsod.dropblock.lr_steps.*150",
        ),
        (
            # Mask R-CNN's steps beyond the detector's iterations it inherits
            "wsis",
            {"mask_rcnn": {"lr_steps": [100000]}},
            r"wsis.mask_rcnn.lr_steps.*100000",
        ),
    ],
)
def test_schedules_are_checked(section: str, values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({**minimal(), section: values})
    # a warm-up as long as the run and a step inside it are fine
    load_config(
        {**minimal(), "wsod": {"iterations": 100, "warmup_iterations": 100, "lr_steps": [99]}}
    )


def test_mask_rcnn_takes_the_detector_settings_it_does_not_set() -> None:
    from weaksam.config import mask_rcnn_config

    cfg = load_config(
        {
            **minimal(),
            "retrain": {"iterations": 100, "lr_steps": [60, 80], "train_sizes": [320, 352]},
            "wsis": {"mask_rcnn": {"train_sizes": [400], "tta_sizes": [], "test_size": 500}},
        }
    )
    m = mask_rcnn_config(cfg)
    assert (m.train_sizes, m.tta_sizes, m.test_size) == ((400,), (), 500)
    assert (m.iterations, m.lr_steps, m.max_size) == (100, (60, 80), cfg.retrain.max_size)
    assert cfg.retrain.train_sizes == (320, 352)  # the detector's own stay
    assert mask_rcnn_config(load_config(minimal())) == load_config(minimal()).retrain


def test_workflow_config_needs_its_own_name_and_an_existing_root(tmp_path: Path) -> None:
    from weaksam.config import check_workflow_config

    demo = REPO / "config" / "config.yaml"
    mine = tmp_path / "mine.yaml"
    root = tmp_path / "data"
    raw = {"dataset": {"format": "labels_csv", "root": "data"}}
    # config/config.yaml's name under a user file that names none: refused, not results/demo/
    cfg = load_config(_merge(yaml.safe_load(demo.read_text()), raw))
    with pytest.raises(ConfigError, match=r"dataset.name': not set in .*mine.yaml.*results/demo/"):
        check_workflow_config(cfg, raw, [mine], demo, tmp_path)
    named = {"dataset": {**raw["dataset"], "name": "mine"}}
    cfg = load_config(_merge(yaml.safe_load(demo.read_text()), named))
    with pytest.raises(ConfigError, match=r"'dataset.root': folder .*data does not exist"):
        check_workflow_config(cfg, named, [mine], demo, tmp_path)
    root.mkdir()
    check_workflow_config(cfg, named, [mine], demo, tmp_path)  # relative to the working folder
    # the demo itself, alone or named explicitly, and a name given with --config
    demo_cfg = load_config_file(demo)
    check_workflow_config(demo_cfg, {}, [], demo, tmp_path)
    check_workflow_config(demo_cfg, yaml.safe_load(demo.read_text()), [demo], demo, tmp_path)
    check_workflow_config(cfg, {"dataset": {"name": "cli"}}, [mine], demo, tmp_path)
