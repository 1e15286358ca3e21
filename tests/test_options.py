"""Every option of a stage config is a command-line option and a flow parameter, with one
default: the CLI parsers and the flow signatures are derived from the configs."""

from __future__ import annotations

import argparse
import inspect
from importlib import import_module, metadata

import pytest

from flows import cli
from flows.cli import FLOW_COMMANDS, build_parser, runs_flows
from flows.options import Options, auto_or_numbers
from flows.parameters import EVALUATE, FINETUNE, INGEST, PREDICT, TILE, TRAIN, VECTORIZE
from geo.errors import InputError
from geo.finetune import FinetuneConfig
from geo.tiling import TileConfig
from tests.support.cli import run_cli

COMMANDS = {"tile": TILE, "train": TRAIN, "finetune": FINETUNE, "predict": PREDICT,
            "evaluate": EVALUATE, "ingest": INGEST, "vectorize": VECTORIZE}  # fmt: skip


def flows() -> dict[str, object]:
    from flows.finetune import finetune_flow
    from flows.ingest import ingest_flow
    from flows.predict import predict_flow
    from flows.tile import tile_flow

    return {"tile": tile_flow, "finetune": finetune_flow, "predict": predict_flow,
            "ingest": ingest_flow}  # fmt: skip


def subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def config_fields(options: Options) -> set[str]:
    """Every field of the options' configs, by the parameter that carries it."""
    return {
        options.shared.get((config, name), name)
        for config in options.configs
        for name in config.model_fields
        if name not in options.skip
    }


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_config_field_is_a_cli_option_with_the_config_default(command: str) -> None:
    options = COMMANDS[command]
    parser = subparser(command)
    dests = {a.dest: a for a in parser._actions if a.dest not in ("help",)}
    fields = config_fields(options)
    assert fields <= set(dests), fields - set(dests)
    for option in options:
        action = dests[option.name]
        if not option.required:
            assert action.default == option.default, option.name
        assert option.help and action.help, f"{command} {option.name} has no help"


@pytest.mark.parametrize("name", ["tile", "finetune", "predict", "ingest"])
def test_every_config_field_is_a_flow_parameter_with_the_config_default(name: str) -> None:
    flow = flows()[name]
    options = COMMANDS[name]
    parameters = inspect.signature(flow).parameters
    assert set(parameters) == config_fields(options)
    for option in options:
        parameter = parameters[option.name]
        expected = inspect.Parameter.empty if option.required else option.default
        assert parameter.default == expected, option.name
    schema = flow.parameters.model_dump()["properties"]  # what a deployment shows and checks
    assert set(schema) == set(parameters)
    assert all(schema[o.name].get("description") for o in options)


def test_help_shows_defaults_and_describes_every_option() -> None:
    for command in [*COMMANDS, "info", "demo"]:
        for action in subparser(command)._actions:  # every option with a default says it
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            assert action.help, (command, action.option_strings)
            on_off = isinstance(action, argparse.BooleanOptionalAction)
            if on_off or action.default not in (None, False):
                assert "(default: " in action.help, (command, action.option_strings)
            elif not action.required:  # what happens without it: "default: none, ..."
                assert "default: " in action.help, (command, action.option_strings)
    train = subparser("train").format_help()
    assert "--lr LR" in train and "0.0003 without" in train
    assert "--batch-size BATCH_SIZE" in train and "(default: 1)" in train
    finetune = " ".join(subparser("finetune").format_help().split())  # its store is --store
    assert "--out" not in finetune.split("--overwrite, --no-overwrite")[1].split("--dask")[0]
    assert "--store STORE.zarr tile store to build from the scenes" in finetune


def test_the_same_default_exists_once() -> None:
    """The finetune flow's tiling and training options are the configs' own objects."""
    by_name = {o.name: o for o in FINETUNE}
    assert by_name["tile_size"].config is TileConfig and by_name["seed"].config is FinetuneConfig
    assert by_name["seed"].default == FinetuneConfig.model_fields["seed"].default


def test_values_are_checked_once_with_one_line_naming_the_flag() -> None:
    with pytest.raises(
        InputError, match=r"^--steps 0: Input should be greater than or equal to 1$"
    ):
        TRAIN.build(FinetuneConfig, {"store": "s.zarr", "out": "run", "steps": 0})
    with pytest.raises(
        InputError, match=r"^give --epochs or --steps, not both \(got --epochs 1 and --steps 2\)$"
    ):
        FinetuneConfig.parse({"store": "s.zarr", "out": "r", "steps": 2, "epochs": 1})
    with pytest.raises(InputError, match=r"^--device 'tpu'|^--device tpu: not a device"):
        FinetuneConfig.parse({"store": "s.zarr", "out": "r", "device": "tpu"})


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["tile", "a.tif", "--labels", "l.gpkg"], True),
        (["-v", "predict", "a.tif", "--model", "run"], True),
        (["predict", "--help"], False),
        (["train", "store.zarr", "--out", "run"], False),
        (["--help"], False),
        ([], False),
    ],
)
def test_flow_commands_are_known_before_parsing(words: list[str], expected: bool) -> None:
    assert runs_flows(words) is expected


def test_flow_commands_are_the_ones_that_run_flows() -> None:
    """The commands that start Prefect's temporary server early are those whose module reaches
    the Prefect API (`run_flow` or `prefect_api`)."""
    reaching = {
        name for name in cli.COMMANDS
        if {"run_flow", "prefect_api"} & set(vars(import_module(f"flows.commands.{name}")))
    }  # fmt: skip
    assert reaching == set(FLOW_COMMANDS)


@pytest.mark.parametrize(
    ("steps", "problem"), [("0", "must be at least 1, got 0"), ("1.5", "expected a whole number")]
)
def test_demo_steps_are_checked_in_one_line(steps: str, problem: str) -> None:
    """`demo --steps 0` reached the finetune flow's parameter check: a 96-line traceback."""
    code, err = run_cli("demo", "--steps", steps)
    assert code == 2
    assert err.strip().startswith(f"convlora-geo demo: error: argument --steps: {problem}")
    assert len(err.strip().splitlines()) == 1


def test_the_command_alone_lists_the_commands_and_version_names_the_versions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`convlora-geo` alone printed only "the following arguments are required: COMMAND", and
    `--version` the same line."""
    assert cli.main([]) == 2
    listed = capsys.readouterr().err
    assert all(f"    {name} " in listed for name in cli.COMMANDS), listed
    assert cli.main(["--version"]) == 0
    line = capsys.readouterr().out.strip()
    own, core = (metadata.version(name) for name in ("convlora-geo", "convlora"))
    assert line.startswith(f"convlora-geo {own} (python ") and f"convlora {core}," in line, line
    assert f"torch {metadata.version('torch')}" in line and "gdal " in line


def test_a_deployment_takes_one_string_for_a_list() -> None:
    """`prefect deployment run -p images=/data/*.tif -p bands=4,3,2` sends strings: the server's
    schema check and the flow's own validation take them, and the config holds lists."""
    from prefect.utilities.schema_tools.validation import validate

    scene = "examples/data/nebraska_center_pivots_landsat/nebraska_*.tif"
    given = {"images": scene, "labels": "examples/data/nebraska_center_pivots_landsat/pivots.gpkg",
             "store": "stores/s.zarr", "out": "runs/r", "bands": "4,3,2", "rgb_bands": "1, 2,3",
             "class_weights": "1,2.5"}  # fmt: skip
    flow = flows()["finetune"]
    schema = flow.parameters.model_dump()  # type: ignore[attr-defined]
    assert validate({**given, "bands": [4, 3, 2]}, schema, raise_on_error=True) == []
    assert validate(given, schema, raise_on_error=True) == []  # refused before: not an array
    assert validate({**given, "images": []}, schema)  # refused when the run is created
    values = flow.validate_parameters(given)  # type: ignore[attr-defined]
    tiling = FINETUNE.build(TileConfig, values)
    assert [p.rsplit("/", 1)[1] for p in tiling.images] == ["nebraska_landsat_albers_30m.tif"]
    assert tiling.labels[0].endswith("/pivots.gpkg") and tiling.bands == [4, 3, 2]
    training = FINETUNE.build(FinetuneConfig, values)
    assert (training.rgb_bands, training.class_weights) == ([1, 2, 3], [1.0, 2.5])
    auto = FINETUNE.build(FinetuneConfig, {**values, "class_weights": "auto"})
    assert auto.class_weights == "auto"
    with pytest.raises(InputError, match=r"^--bands 4 3 2: Input should be a valid integer"):
        FINETUNE.build(TileConfig, {**values, "bands": "4 3 2"})
    with pytest.raises(InputError, match=r"^nowhere/\*\.tif: no file matches this pattern$"):
        FINETUNE.build(TileConfig, {**values, "images": "nowhere/*.tif"})


def test_a_scene_given_twice_is_predicted_once(tmp_path) -> None:
    """A scene listed twice, or matched by two patterns, is one scene of the run (twice, one run
    raced itself for its outputs: 'another run is writing this prediction now')."""
    from geo.predict import PredictConfig

    for name in ("a.tif", "ab.tif", "b.tif"):
        (tmp_path / name).write_bytes(b"")
    given = [str(tmp_path / "a*.tif"), str(tmp_path / "*.tif"), str(tmp_path / "a.tif")]
    config = PredictConfig.parse({"images": given, "model": "run", "out": str(tmp_path / "out")})
    assert [p.rsplit("/", 1)[1] for p in config.images] == ["a.tif", "ab.tif", "b.tif"]


def test_a_deployment_run_names_parameters_where_the_cli_names_flags() -> None:
    """Messages are written with the command line's flags; in a deployment run (the test on a
    real server: tests/flows/test_roundtrip.py) they name parameters as `-p` takes them."""
    from flows.logs import as_parameters

    words = FINETUNE.parameter_words()
    assert (words["--rgb-bands"], words["--checkpoint"]) == ("rgb_bands", "sam_checkpoint")
    assert (words["--overwrite"], words["--no-augment"]) == ("overwrite=true", "augment=false")
    text = "--rgb-bands 5,6,7: give 3 bands; pass --overwrite, not --no-augment or --json"
    assert as_parameters(text, words) == (
        "rgb_bands 5,6,7: give 3 bands; pass overwrite=true, not augment=false or --json"
    )
    assert as_parameters("s.tif--tile-size: a name, not a flag", words).endswith(
        "--tile-size: a name, not a flag"
    )
    assert as_parameters(text) == text  # outside a deployment run


def test_verbose_goes_before_or_after_the_command() -> None:
    """`convlora-geo train STORE ... -v`, as users type it, was refused (`unrecognized
    arguments: -v`): -v belonged to the program alone."""
    parser = build_parser()
    for command in COMMANDS:
        assert "-v, --verbose" in subparser(command).format_help(), command
    assert parser.parse_args(["vectorize", "c.tif", "--out", "p.gpkg", "-v"]).verbose
    assert parser.parse_args(["-v", "vectorize", "c.tif", "--out", "p.gpkg"]).verbose
    assert not parser.parse_args(["vectorize", "c.tif", "--out", "p.gpkg"]).verbose


def test_class_weights_take_auto_in_any_case_and_say_what_they_expect() -> None:
    assert auto_or_numbers("AUTO") == auto_or_numbers(" auto ") == "auto"
    assert auto_or_numbers("1,2.5") == [1.0, 2.5]
    with pytest.raises(argparse.ArgumentTypeError) as err:
        auto_or_numbers("1,heavy")
    assert str(err.value) == "expected auto or one number per class like 1,2.5,4, got '1,heavy'"
