"""The method registry is the one list of methods; every method follows the Method protocol."""

import importlib
import subprocess
import sys

import pytest
import torch

from duda_engine.config import METHODS as CONFIG_METHODS
from duda_engine.config import ExperimentConfig
from duda_engine.methods import METHODS, Method, build_method
from duda_engine.validation import class_spec


def test_the_config_names_the_registered_methods_without_importing_torch():
    assert CONFIG_METHODS == tuple(METHODS) == ("source_only", "self_training", "duda", "oracle")
    code = "import sys, duda_engine.config; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize("name", list(METHODS))
def test_every_registered_method_is_a_method(name):
    module, _, attribute = METHODS[name].partition(":")
    cls = getattr(importlib.import_module(module), attribute)
    assert Method in cls.__mro__  # it declares the protocol (and inherits its prepare)
    for member in ("train_step", "state_dict", "load_state_dict", "prepare"):
        assert callable(getattr(cls, member)), member


def test_an_unknown_method_names_the_known_ones():
    config = ExperimentConfig()
    config.method = "dacs"  # past the config's own check
    with pytest.raises(ValueError, match="known: duda, oracle, self_training, source_only"):
        build_method(config, class_spec(config), torch.device("cpu"))
