"""YAML configs: sections, unknown keys, flag overrides."""

from __future__ import annotations

import pytest

from beamscore.config import ScoreConfig, load_yaml
from beamscore.errors import BeamscoreError


def test_sections_map_to_fields(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(
        "model: {path: m, signature: s, tag_set: 'serve,gpu', version: 3}\n"
        "input: {paths: 'a/*.parquet', keep: [id], map: {x: f}, cast: true}\n"
        "output: {path: out, outputs: [y], overwrite: true}\n"
        "batch: {size: 128}\n"
        "pipeline_options: {runner: DataflowRunner, num_workers: 4}\n"
    )
    c = load_yaml(str(path))
    # relative paths are relative to the config file's directory
    assert (c.model, c.signature, c.tag_set, c.version) == (str(tmp_path / "m"), "s", "serve,gpu", 3)
    assert c.inputs == [str(tmp_path / "a/*.parquet")] and c.keep == ["id"] and c.map == {"x": "f"} and c.cast
    assert (c.output, c.outputs, c.overwrite, c.batch_size) == (str(tmp_path / "out"), ["y"], True, 128)
    assert c.pipeline_options == {"runner": "DataflowRunner", "num_workers": 4}


def test_flags_override_file():
    c = ScoreConfig(model="m", inputs=["a"], output="o", pipeline_options={"runner": "X"})
    merged = c.merged({"model": "m2", "inputs": None, "pipeline_options": {"project": "p"}})
    assert merged.model == "m2" and merged.inputs == ["a"]
    assert merged.pipeline_options == {"runner": "X", "project": "p"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("modle: {path: m}\n", "unknown section 'modle'"),
        ("model: {pth: m}\n", "unknown key model.pth; keys of model: path, signature, tag_set, version"),
        ("model: [1]\n", "section 'model' must be a mapping"),
        ("model: {path: m\n", "not valid YAML"),
    ],
)
def test_bad_configs(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(BeamscoreError, match=message):
        load_yaml(str(path))


def test_validate_requires_model_input_output():
    with pytest.raises(BeamscoreError, match="missing --model, --input, --output"):
        ScoreConfig().validate()
    with pytest.raises(BeamscoreError, match="--batch-size must be a whole number of at least 1, got 0"):
        ScoreConfig(model="m", inputs=["i"], output="o", batch_size=0).validate()


def test_model_imports_key(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("model: {path: m, imports: tensorflow_text}\ninput: {paths: a}\noutput: {path: o}\n")
    assert load_yaml(str(path)).validate().imports == ["tensorflow_text"]
    path.write_text("model: {path: m, imports: [a, b]}\n")
    assert load_yaml(str(path)).imports == ["a", "b"]
    with pytest.raises(BeamscoreError, match="must be module names"):
        ScoreConfig(model="m", inputs=["a"], output="o", imports=[3]).validate()


def test_allow_empty_key(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("model: {path: m}\ninput: {paths: a, allow_empty: true}\noutput: {path: o}\n")
    assert load_yaml(str(path)).allow_empty is True
    path.write_text("model: {path: m}\ninput: {paths: a, allow_empty: 'yes'}\noutput: {path: o}\n")
    with pytest.raises(BeamscoreError, match="allow_empty"):
        load_yaml(str(path))


def test_plan_on_workers_is_true_false_or_unset():
    base = {"model": "m", "inputs": ["i"], "output": "o"}
    for value in (None, True, False):
        ScoreConfig(**base, plan_on_workers=value).validate()
    with pytest.raises(BeamscoreError, match=r"input\.plan_on_workers must be true or false, got 'yes please'"):
        ScoreConfig(**base, plan_on_workers="yes please").validate()


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    """A "billion laughs" config: nine levels of aliases would be 10**9 strings."""
    lines = ['a0: &a0 ["lol"]'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("pipeline_options:\n" + "".join(f"  {line}\n" for line in lines))
    with pytest.raises(BeamscoreError, match=r"bomb.yaml: line 3: YAML aliases \(\*a0\) are not allowed"):
        load_yaml(str(path))
    path.write_text("input: {paths: a, keep: &k [id]}\noutput: {path: o, outputs: *k}\n")
    with pytest.raises(BeamscoreError, match="aliases"):
        load_yaml(str(path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input: {keep: {a: 1}}\n", "input.keep must be a string or a list of strings, got a mapping"),
        ("input: {keep: [1, 2]}\n", "input.keep must be a string or a list of strings, got a list"),
        ("batch: {size: '64'}\n", "batch.size must be a whole number, got a string '64'"),
        ("batch: {size: true}\n", "batch.size must be a whole number, got a boolean"),
        ("input: {cast: 'yes please'}\n", "input.cast must be true or false"),
        ("input: {map: [x]}\n", "input.map must be a mapping of names to strings"),
        ("output: {max_failed_fraction: '1%'}\n", "output.max_failed_fraction must be a number"),
        ("model: {path: [m]}\n", "model.path must be a string, got a list"),
        ("pipeline_options: {runner: {a: b}}\n", "pipeline_options.runner must be a value or a list of values"),
    ],
)
def test_a_config_type_error_is_one_line_naming_the_key(tmp_path, text, message):
    path = tmp_path / "typed.yaml"
    path.write_text(text)
    with pytest.raises(BeamscoreError, match=message) as info:
        load_yaml(str(path))
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}: ")


def test_an_oversized_config_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(BeamscoreError, match="at most 1,048,576 bytes"):
        load_yaml(str(path))
