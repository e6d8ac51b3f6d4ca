"""The one place that decides which engine paths a web user may name: none, except a weights source
the server offers.

The engine marks every field that holds a path (``duda_engine.config.path_fields``). From the web,
datasets come from the catalogue, the output folder from the server and frozen teachers from the
user's own runs (the ``teachers`` launch field), so an override of any of those is refused, and so
is one of a dataset's ``kind``, which says how its folder is read (and, for ``toy``, written); the
``*_pretrained`` weights accept ``""``, ``"imagenet"`` or the name of a file the catalogue lists under
``WEIGHTS_DIR``, which becomes that file's resolved path. A path field the engine gains later is
refused here until it is given a rule. The CLI runs as its user and takes any path.
"""

from __future__ import annotations

from typing import Any

from webapp.runs import catalog
from webapp.runs.errors import ApplicationError

WEIGHTS_FIELDS = ("model.student_pretrained", "model.auxiliary_pretrained")
HOW_TO_CHOOSE = {
    "output_dir": "set by the server",
    "duda.frozen_teachers": "choose frozen teachers with the teachers field",
}
NO_WEIGHTS = ""
DATASET_KIND_FIELDS = ("source.kind", "target.kind")
FROM_THE_DATASET = "set by the server from the chosen dataset (choose one the catalogue lists)"


def _refuse(dotted: str, message: str) -> ApplicationError:
    return ApplicationError.invalid("bad override", fields={"overrides": [f"{dotted}: {message}"]})


def _find(tree: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """Whether the tree of overrides sets the field, and its value."""
    node: Any = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _weights_source(dotted: str, value: Any) -> str:
    if value in (NO_WEIGHTS, catalog.IMAGENET_WEIGHTS):
        return value
    files = catalog.weights_files()
    if isinstance(value, str) and value in files:
        return str(files[value])
    offered = ", ".join(repr(name) for name in [NO_WEIGHTS, *catalog.weights_sources()])
    raise _refuse(dotted, f"not a weights source of this server (offered: {offered})")


def confined_paths(overridden: dict[str, Any]) -> dict[str, str]:
    """The path fields a launch's overrides set (given as a config tree), each as the engine must get
    it; ApplicationError naming ``overrides`` and the field for any path a web user may not name."""
    from duda_engine.config import path_fields

    allowed = {}
    for dotted in path_fields():
        found, value = _find(overridden, dotted)
        if not found:
            continue
        if dotted in WEIGHTS_FIELDS:
            allowed[dotted] = _weights_source(dotted, value)
        elif dotted.startswith(("source.", "target.")):
            raise _refuse(dotted, FROM_THE_DATASET)
        else:
            raise _refuse(dotted, HOW_TO_CHOOSE.get(dotted, "set by the server"))
    for dotted in DATASET_KIND_FIELDS:
        if _find(overridden, dotted)[0]:
            raise _refuse(dotted, FROM_THE_DATASET)
    return allowed
