"""Options generated from settings dataclasses (`dscoder.cli.options`): defaults, help, choices,
off switches, environment variables and nested settings, as typer sees them."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

import pytest
import typer
from typer.testing import CliRunner

from dscoder.cli.options import from_settings, option
from dscoder.settings import setting

runner = CliRunner()


@dataclass
class Inner:
    depth: int = setting(3, "How deep to go.")
    cache: bool = setting(True, "Do not cache anything.", "--no-cache")


@dataclass
class Outer:
    name: str = setting(..., "Who to greet.", argument=True)
    colour: str = setting("red", "Which colour.", "--colour", "-c", choices=("red", "green"))
    token: str | None = setting(None, "A secret.", envvar="TEST_OPTIONS_TOKEN")
    inner: Inner = setting(help="The nested settings.", default_factory=Inner)
    loud: bool = setting(False, "Shout.")


def _app(cls=Outer, **kw) -> tuple[typer.Typer, list]:
    seen = []
    app = typer.Typer()

    @app.command()
    @from_settings(cls, **kw)
    def main(cfg, extra: int = typer.Option(0, "--extra", help="Not a setting.")) -> None:
        seen.append((cfg, extra))

    return app, seen


def test_values_build_the_settings_object_nested_classes_included():
    app, seen = _app()
    result = runner.invoke(app, ["bob", "-c", "green", "--depth", "5", "--no-cache", "--loud", "--extra", "2"])
    assert result.exit_code == 0, result.output
    assert seen == [(Outer("bob", "green", None, Inner(5, False), True), 2)]
    result = runner.invoke(app, ["amy"])
    assert seen[-1] == (Outer("amy"), 0)  # every default is the dataclass's own, the off switch left on


def test_help_shows_each_fields_default_and_help_and_follows_a_changed_help():
    app, _ = _app()
    text = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    for f in (*dataclasses.fields(Outer), *dataclasses.fields(Inner)):
        if f.name != "inner":
            assert f.metadata["help"] in text, f.name
    assert "[default: 3]" in text and "--no-cache" in text and "--no-no-cache" not in text
    assert "[env var: TEST_OPTIONS_TOKEN]" in text

    @dataclass
    class Changed(Outer):
        loud: bool = setting(False, "Shout, as loud as a changed help text says.")

    changed, _ = _app(Changed)
    assert "as loud as a changed help text says" in runner.invoke(changed, ["--help"], env={"COLUMNS": "200"}).output


def test_a_value_outside_the_choices_is_refused_naming_them():
    app, seen = _app()
    result = runner.invoke(app, ["bob", "--colour", "blue"])
    assert result.exit_code == 2 and not seen
    assert "'blue' is not one of red, green" in result.output


def test_environment_variable_fills_an_option_not_given():
    app, seen = _app()
    assert runner.invoke(app, ["bob"], env={"TEST_OPTIONS_TOKEN": "s3cret"}).exit_code == 0
    assert seen[-1][0].token == "s3cret"


def test_a_command_parameter_named_like_a_setting_is_refused():
    with pytest.raises(TypeError, match="depth"):
        @from_settings(Outer)
        def clash(cfg, depth: int = 1) -> None: ...


def test_one_field_as_an_option_with_other_flags():
    from dscoder.hub import ModelChoice

    info = option(ModelChoice, "model", flags=("--model",))
    assert info.param_decls == ("--model",) and info.default is None
    assert info.help == dataclasses.fields(ModelChoice)[0].metadata["help"]


def _settings_classes() -> list[type]:
    from dscoder.data.pipeline import BuildConfig
    from dscoder.hub import ModelChoice
    from dscoder.serve.engine import EngineConfig
    from dscoder.serve.limits import HttpLimits
    from dscoder.serve.server import ServeConfig

    classes = [BuildConfig, EngineConfig, HttpLimits, ModelChoice, ServeConfig]
    try:  # the evaluation settings, where the harness declares them
        from dscoder.eval.config import EvalConfig
        classes.append(EvalConfig)
    except ImportError:
        pass
    return classes


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: c.__name__)
def test_every_setting_has_a_help_text(cls):
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
        nested = typing.get_type_hints(cls)[f.name]
        if isinstance(nested, type) and dataclasses.is_dataclass(nested):
            assert nested in _settings_classes()


def test_serve_options_are_the_settings_flattened():
    from dscoder.cli.app import app

    text = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "250"}).output
    for flag in ("--model", "--host", "--port", "--api-key", "--quant", "--kv-cache-gib", "--block-size",
                 "--max-running", "--max-waiting", "--prefill-chunk", "--max-model-len", "--no-prefix-cache",
                 "--max-body-bytes", "--header-timeout", "--body-timeout", "--queue-timeout", "--max-connections"):
        assert flag in text, flag
    assert "--kv-cache-bytes" not in text and "--num-blocks" not in text  # cli=False settings
