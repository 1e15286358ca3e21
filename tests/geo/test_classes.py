"""Class maps: file formats, value matching, unmapped values and clear errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from geo.contracts.classes import (
    IGNORE,
    ClassMap,
    Width,
    boundary_class,
    load_class_map,
    object_ids,
    parse_class_list,
    value_key,
)
from geo.errors import InputError
from tests.support.models import metadata_for
from tests.support.paths import FTW

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_value_key_treats_numbers_and_text_alike() -> None:
    assert value_key(5) == value_key(5.0) == value_key("5") == value_key(np.uint8(5)) == "5"
    assert value_key("yes") == "yes"
    assert value_key(2.5) == value_key("2.5")
    assert value_key(None) is None and value_key(float("nan")) is None


def test_list_format_from_json(tmp_path: Path) -> None:
    path = tmp_path / "classes.json"
    classes = [
        {"name": "background", "color": "#000000"},
        {"name": "wheat", "values": [23, "24"], "color": "#D8B56B"},
        {"name": "corn", "values": 1},
    ]
    path.write_text(json.dumps(classes))
    cmap = ClassMap.load(path)
    assert cmap.num_classes == 3 and cmap.unmapped == "ignore"
    assert cmap.to_list() == [
        {"id": 0, "name": "background", "color": "#000000"},
        {"id": 1, "name": "wheat", "color": "#d8b56b"},
        {"id": 2, "name": "corn", "color": "#1f78b4"},  # a default palette colour
    ]
    assert [cmap.class_id(v) for v in (23, 24.0, "1", 99)] == [1, 1, 2, None]
    ids, missing = cmap.map_values([23, 1, 99, None])
    assert ids.tolist() == [1, 2, IGNORE, IGNORE] and missing == ["99", "<missing>"]
    assert ClassMap.from_dict(cmap.to_dict()) == cmap


def test_mapping_format_with_unmapped_background() -> None:
    cmap = ClassMap.from_dict(
        {"unmapped": "background", "classes": [{"name": "other"}, {"name": "pivot", "values": [1]}]}
    )
    codes = np.array([[0, 1], [7, 1]], dtype=np.uint8)
    ids, missing = cmap.map_array(codes)
    assert ids.tolist() == [[0, 1], [0, 1]] and missing == {"0", "7"}
    assert cmap.with_unmapped("ignore").map_array(codes)[0].tolist() == [[255, 1], [255, 1]]
    assert cmap.with_unmapped(None) is cmap


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([{"name": "background"}], "at least two classes"),
        ([{"name": "a"}, {"name": "a"}], "unique"),
        ([{"name": "a", "values": [1]}, {"name": "b", "values": [1.0]}], "listed in two classes"),
        ([{"name": "a"}, {"name": "b", "id": 3}], "position 1"),
        ([{"name": "a"}, {"name": "b", "color": "red"}], "#rrggbb"),
        ([{"name": "a"}, {"name": "b", "colour": "#ffffff"}], "unknown keys"),
        ({"classes": [{"name": "a"}, {"name": "b"}], "unmapped": "drop"}, "unmapped"),
        ({"labels": []}, "expected keys 'classes' and optional 'unmapped', found 'labels'"),
        ([{"name": "a"}, {"name": "b", "boundary": "2"}], "boundary width '2': give a positive"),
        ([{"name": "a"}, {"name": "b", "boundary": "-1 m"}], "give a positive width in px or m"),
        ([{"name": "a", "boundary": "1 px"}, {"name": "b"}], "background .* cannot be a boundary"),
        ([{"name": "a"}, {"name": "b", "boundary": "1 px"}], "needs an object class"),
        (
            [
                {"name": "a"},
                {"name": "b"},
                {"name": "c", "boundary": "1 px"},
                {"name": "d", "boundary": "2 px"},
            ],
            "at most one boundary class",
        ),  # fmt: skip
        ("just text", "expected a list"),
    ],
)
def test_bad_class_maps_raise_one_line(content: object, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        ClassMap.from_dict(content, source="classes.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith("classes.yaml: ")


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        ClassMap.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [unclosed")
    with pytest.raises(InputError, match="not valid JSON or YAML"):
        ClassMap.load(bad)
    flow = tmp_path / "flow.yaml"  # an unquoted colour in a flow mapping: the rest is a comment
    flow.write_text("classes:\n  - {name: background}\n  - {name: pivot, color: #e31a1c}\n")
    with pytest.raises(InputError) as err:
        ClassMap.load(flow)
    assert str(err.value) == (
        f"{flow}: not valid JSON or YAML (line 4, column 1: expected the node content, but found "
        "'<stream end>'; an unquoted # starts a comment: quote colours (color: '#e31a1c'))"
    )
    indented = tmp_path / "indented.yaml"  # a comment after a key, and a YAML error elsewhere
    indented.write_text("classes:  # ours\n  - name: background\n - name: pivot\n")
    with pytest.raises(InputError, match=r"indented.yaml: not valid JSON or YAML \(line 3") as err:
        ClassMap.load(indented)
    assert "quote colours" not in str(err.value)
    latin = tmp_path / "latin.yaml"  # saved by a Windows editor in cp1252
    latin.write_bytes("classes:\n  - {name: fond}\n  - {name: blé}\n".encode("cp1252"))
    with pytest.raises(
        InputError, match=r"latin.yaml: not UTF-8 text \(line 3\); save it as UTF-8$"
    ):
        ClassMap.load(latin)


def test_plain_yaml_values_are_read_as_written(tmp_path: Path) -> None:
    """YAML 1.1 would read yes/on as booleans, 010 as octal 8 and 1:30 as 90: label values
    (SpaceNet's building=yes, zero-padded codes) then matched nothing."""
    path = tmp_path / "classes.yaml"
    path.write_text(
        "classes:\n  - name: background\n    values: [no, off]\n  - name: building\n"
        "    values: [yes, Yes, on, 010, 0x1F, 1:30, true, 2.5]\n"
    )
    classes = ClassMap.load(path)
    assert classes.classes[0].values == ("no", "off")
    assert classes.classes[1].values == ("yes", "Yes", "on", "10", "31", "1:30", "true", "2.5")
    assert (
        classes.class_id("yes") == 1 and classes.class_id(10) == 1 and classes.class_id(8) is None
    )


def test_an_unquoted_colour_is_refused_saying_why(tmp_path: Path) -> None:
    """`color: #e31a1c` unquoted is a YAML comment: the class silently took a palette colour."""
    path = tmp_path / "classes.yaml"
    path.write_text("classes:\n  - name: background\n  - name: pivot\n    color: #e31a1c\n")
    with pytest.raises(InputError, match="class 'pivot' has an empty colour; quote it") as err:
        ClassMap.load(path)
    assert "\n" not in str(err.value) and "unquoted # starts a comment" in str(err.value)


@pytest.mark.parametrize("name", ["''", "'   '", "", "null"])
def test_a_class_without_a_name_is_refused(name: str, tmp_path: Path) -> None:
    """An empty or blank name gave an empty legend entry and a blank metrics row."""
    path = tmp_path / "classes.yaml"
    path.write_text(f"classes:\n  - name: background\n  - name: {name}\n    values: [1]\n")
    with pytest.raises(InputError) as err:
        ClassMap.load(path)
    assert str(err.value) == (
        f"{path}: class 1 has an empty name; name it (the name is its legend entry in QGIS, the "
        "quick-look and the metrics)"
    )


@pytest.mark.parametrize(
    ("name", "n_classes"),
    [
        ("agnet_classes.yaml", 8),
        ("pivots_classes.yaml", 2),
        ("buildings_classes.yaml", 2),
        ("pivots_boundaries.yaml", 3),
        ("ftw_classes.yaml", 3),
    ],  # fmt: skip
)
def test_bundled_class_maps_load(name: str, n_classes: int) -> None:
    cmap = load_class_map(EXAMPLES / name)
    assert cmap.num_classes == n_classes
    assert cmap.classes[0].name == "background"


def test_agnet_class_map_matches_cdl_codes() -> None:
    cmap = load_class_map(EXAMPLES / "agnet_classes.yaml")
    assert [cmap.class_id(c) for c in (5, 23, 176, 1, 195, 190, 21, 42, 111, 31)] == [
        1, 2, 3, 4, 5, 5, 6, 7, 0, None,
    ]  # fmt: skip


def test_boundary_classes_travel_with_their_width_through_stores_and_adapters() -> None:
    cmap = load_class_map(EXAMPLES / "ftw_classes.yaml")
    boundary = cmap.boundary
    assert boundary is not None and boundary.id == 2 and str(boundary.boundary) == "2 px"
    assert boundary.boundary.pixels(10.0) == 2.0 and Width.parse("25 m").pixels(10.0) == 2.5
    assert object_ids(cmap.classes) == [1]
    assert cmap.to_list()[2] == {"id": 2, "name": "field boundary", "color": "#e31a1c",
                                 "boundary": "2 px"}  # fmt: skip
    assert "boundary" not in cmap.to_list()[1]  # plain classes travel as before
    assert ClassMap.from_dict(cmap.to_dict()) == cmap
    travelled = parse_class_list(json.loads(json.dumps(cmap.to_list())), "adapter.json")
    assert travelled == tuple(replace(c, values=()) for c in cmap.classes)
    metadata = metadata_for(FTW, [1, 2, 3], classes=cmap.to_list())
    assert boundary_class(metadata.classes) == boundary


def test_many_classes_without_colours_get_distinct_ones() -> None:
    """A map of 64 classes (one per crop type, as --label-field gives): the palette's 16
    colours repeated four times before (class 16 was black, 17 the colour of class 1)."""
    cmap = ClassMap.from_dict([{"name": f"class {i}", "values": [i]} for i in range(64)])
    colours = [c.color for c in cmap.classes]
    assert len(set(colours)) == 64 and colours[:2] == ["#000000", "#e31a1c"]
    assert "#000000" not in colours[1:]
