"""Every number of the config has a range a run can use, every float is finite and every string is one
line: generated from the dataclasses, so a new field is covered the day it is added."""

from __future__ import annotations

import json
import re
import typing

import pytest

from duda_engine.config import ConfigError, config_leaves
from duda_engine.config_loading import config_from_dict, load_config

VALID = {"source": {"domain": "synthetic_a"}, "target": {"domain": "real"}}
NUMERIC = [leaf for leaf in config_leaves() if leaf.scalar in (int, float)]
FLOATS = [leaf for leaf in NUMERIC if leaf.scalar is float]
STRINGS = [leaf for leaf in config_leaves() if leaf.scalar is str]


def with_leaf(name: str, value) -> dict:
    """The valid config with one leaf set (sections copied, not shared)."""
    data = json.loads(json.dumps(VALID))
    node = data
    *sections, key = name.split(".")
    for section in sections:
        node = node.setdefault(section, {})
    node[key] = value
    return data


def shaped(leaf, number):
    """``number`` in the shape of the leaf: itself, a pair (every list of numbers is a pair), or one RGB."""
    if leaf.annotation == list[list[int]]:
        return [[number] * 3]
    if typing.get_origin(leaf.annotation) is list:
        return [number, number]
    return number


def refused_field(data) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert str(caught.value).startswith(f"{caught.value.field}: ")
    return re.sub(r"\[\d+\]", "", caught.value.field)  # an element's error names its list field


def test_the_defaults_are_inside_their_ranges():
    config_from_dict(VALID)
    assert NUMERIC and all(leaf.range is not None for leaf in NUMERIC), [leaf.name for leaf in NUMERIC if leaf.range is None]


@pytest.mark.parametrize("leaf", NUMERIC, ids=lambda leaf: leaf.name)
@pytest.mark.parametrize("number", [10**12, -(10**12)])
def test_every_number_far_outside_its_range_is_refused_by_name(leaf, number):
    value = float(number) if leaf.scalar is float else number
    assert refused_field(with_leaf(leaf.name, shaped(leaf, value))) == leaf.name


@pytest.mark.parametrize("leaf", FLOATS, ids=lambda leaf: leaf.name)
@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf"), 10**400])
def test_every_float_must_be_finite(leaf, number):
    assert refused_field(with_leaf(leaf.name, shaped(leaf, number))) == leaf.name


@pytest.mark.parametrize("leaf", [leaf for leaf in NUMERIC if leaf.scalar is int], ids=lambda leaf: leaf.name)
def test_a_float_for_an_integer_stays_refused(leaf):
    assert refused_field(with_leaf(leaf.name, shaped(leaf, 2.0))) == leaf.name


@pytest.mark.parametrize("leaf", STRINGS, ids=lambda leaf: leaf.name)
@pytest.mark.parametrize("text", ["\x00", "cpu\x00", "a\nb", "a\tb", "\x1b[31m", "\x7f", "\x85"])
def test_every_string_refuses_control_characters(leaf, text):
    value = [text] if leaf.annotation == list[str] else text
    assert refused_field(with_leaf(leaf.name, value)) == leaf.name


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"train": {"iterations": 2**31}}, "train.iterations", "must be in 1..10000000"),
        ({"seed": 2**31}, "seed", "must be in 0..2147483647"),
        ({"train": {"batch_size": 10**9}}, "train.batch_size", "must be in 1..256"),
        ({"train": {"num_workers": 65}}, "train.num_workers", "must be in 0..64"),
        ({"optim": {"lr": 2.0}}, "optim.lr", "must be in (0, 1]"),
        ({"optim": {"lr": float("inf")}}, "optim.lr", "must be a finite number, got inf"),
        ({"self_training": {"ema_alpha": 1.0}}, "self_training.ema_alpha", "must be in (0, 1)"),
        ({"target": {"val_split": "../../elsewhere"}}, "target.val_split", "must be a folder name"),
        ({"source": {"train_split": ".."}}, "source.train_split", "must be a folder name"),
        ({"name": "x" * 70 + "\x00"}, "name", "must not contain control characters"),
    ],
)
def test_messages_name_the_field_and_the_range(data, field, message):
    merged = {**VALID, **{k: {**VALID.get(k, {}), **v} if isinstance(v, dict) else v for k, v in data.items()}}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(merged)
    assert caught.value.field == field and message in caught.value.message


def test_the_largest_values_that_can_run_are_accepted():
    config = config_from_dict(
        with_leaf("train.iterations", 10_000_000) | {"seed": 2**31 - 1}
        | {"optim": {"lr": 1.0, "warmup_iters": 10_000_000}}
    )
    assert (config.train.iterations, config.seed, config.optim.lr) == (10_000_000, 2**31 - 1, 1.0)


def test_a_long_wrong_value_is_quoted_short():
    with pytest.raises(ConfigError) as caught:
        config_from_dict(with_leaf("train.iterations", "9" * 10_000 + "x"))
    assert len(caught.value.message) < 100


def test_the_cli_reads_1e999_as_infinity_and_refuses_it(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"source": {"domain": "synthetic_a"}, "target": {"domain": "real"}, "optim": {"lr": 1e999}}')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.field == "optim.lr"
