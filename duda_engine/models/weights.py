"""Loading ImageNet weights into an encoder from a local file (never downloaded), and counting parameters.

``load_pretrained_encoder(encoder, path)`` accepts what users have on disk:

- a plain state_dict, or a checkpoint dict holding one under ``"state_dict"`` or ``"model"``;
- ``.pth``/``.pt``/``.bin`` files (read with ``torch.load(..., weights_only=True)``) and ``.safetensors``;
- key prefixes ``module.``, ``backbone.``, ``encoder.`` (stripped) and classifier keys ``head.``, ``fc.``,
  ``classifier.`` (dropped: a ``features_only`` encoder has none);
- full timm models (``stages.0.…``) for timm's ``features_only`` wrappers (``stages_0.…``);
- original SegFormer MiT checkpoints (``patch_embed1.…``, ``block1.0.…``), renamed to timm's pvt_v2.

Every encoder tensor must be found with the right shape (BatchNorm ``num_batches_tracked`` counters
excepted); otherwise :class:`PretrainedWeightsError` says how many keys matched, are missing or
unexpected, with examples. Extra keys in the file (layers past the last feature stage, a decode head)
are allowed and logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

STRIPPED_PREFIXES = ("module.", "backbone.", "encoder.")
CLASSIFIER_PREFIXES = ("head.", "head_dist.", "fc.", "classifier.")
_IGNORED_MISSING_SUFFIX = "num_batches_tracked"
_EXAMPLES = 5


class PretrainedWeightsError(ValueError):
    """A pretrained weights file is missing, unreadable, or does not fit the encoder."""


@dataclass
class LoadReport:
    """What ``load_pretrained_encoder`` did: tensors loaded, and file keys it did not use."""

    path: str
    matched: int
    unexpected: list[str] = field(default_factory=list)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements in ``module`` (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def weights_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a weights file, judged from its first bytes (None: it may be one). A zip
    archive (``torch.save`` since PyTorch 1.6), a pickle (its older format) and a safetensors file (an
    8-byte header length, then a JSON object) pass; whether the tensors fit is checked when loading."""
    with path.open("rb") as stream:
        head = stream.read(9)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= path.stat().st_size - 8:
        return None
    return "is not a weights file (neither torch.save's format nor safetensors)"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped from ``"state_dict"``/``"model"`` and with prefixes stripped."""
    file = Path(path)
    if not str(path):
        raise PretrainedWeightsError("no pretrained weights file given")
    if not file.is_file():
        raise PretrainedWeightsError(f"pretrained weights file not found: {file}")
    problem = weights_file_problem(file)
    if problem:
        raise PretrainedWeightsError(f"could not read pretrained weights file {file}: it {problem}")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: object = load_file(str(file), device="cpu")
        else:
            raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader error is the same problem for the user: the file is unusable
        raise PretrainedWeightsError(f"could not read pretrained weights file {file}: {exc}") from exc

    state = _unwrap(raw)
    if state is None:
        raise PretrainedWeightsError(
            f"pretrained weights file {file} holds no state_dict (expected a dict of tensors, "
            f"possibly under 'state_dict' or 'model'; got {type(raw).__name__})"
        )
    return {_strip_prefixes(k): v for k, v in state.items()}


def load_pretrained_encoder(encoder: nn.Module, path: str | Path) -> LoadReport:
    """Copy the weights in ``path`` into ``encoder`` (in place); raise :class:`PretrainedWeightsError` when
    the file is missing, unreadable, or does not provide every encoder tensor with the right shape."""
    state = read_state_dict(path)
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    if _looks_like_original_mit(state):
        state = _rename_original_mit(state)
    return load_encoder_state(encoder, state, str(path))


def load_encoder_state(encoder: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> LoadReport:
    """Copy ``state`` (timm names, or timm's with ``.`` for ``_``) into ``encoder``; every encoder tensor
    must be there with the right shape, else :class:`PretrainedWeightsError` naming ``source``."""
    target = encoder.state_dict()
    by_canonical = _unique_canonical_names(target)
    loaded: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    wrong_shape: list[str] = []
    for key, value in state.items():
        name = key if key in target else by_canonical.get(_canonical(key))
        if name is None:
            unexpected.append(key)
        elif value.shape != target[name].shape:
            wrong_shape.append(f"{key} {tuple(value.shape)} vs {tuple(target[name].shape)}")
        else:
            loaded[name] = value
    missing = [k for k in target if k not in loaded and not k.endswith(_IGNORED_MISSING_SUFFIX)]

    if missing or wrong_shape:
        needed = len([k for k in target if not k.endswith(_IGNORED_MISSING_SUFFIX)])
        parts = [
            f"pretrained weights {source} do not match the encoder {type(encoder).__name__}:",
            f"{len(loaded)} of {needed} encoder keys matched, {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong_shape)} with the wrong shape.",
        ]
        if missing:
            parts.append(f"Missing e.g. {_examples(missing)}.")
        if unexpected:
            parts.append(f"Unexpected e.g. {_examples(unexpected)}.")
        if wrong_shape:
            parts.append(f"Wrong shape (file vs encoder) e.g. {_examples(wrong_shape)}.")
        parts.append("Is this file for the same encoder (timm names, ImageNet classifier weights are fine)?")
        raise PretrainedWeightsError(" ".join(parts))

    merged = dict(target)
    merged.update({k: v.to(dtype=target[k].dtype) for k, v in loaded.items()})
    encoder.load_state_dict(merged, strict=True)
    if unexpected:
        logger.info("%s: %d keys not used by the encoder, e.g. %s", source, len(unexpected), _examples(unexpected))
    return LoadReport(path=source, matched=len(loaded), unexpected=unexpected)


# ---------------------------------------------------------------------------------------------------------
# helpers


def _unwrap(raw: object) -> dict[str, torch.Tensor] | None:
    """The dict of tensors in a checkpoint: the object itself, or what it holds under state_dict/model."""
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if not isinstance(raw, Mapping):
            return None
        inner = next((raw[k] for k in ("state_dict", "model") if isinstance(raw.get(k), Mapping)), None)
        if inner is None:
            break
        raw = inner
    if not isinstance(raw, Mapping):
        return None
    tensors = {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    return tensors or None


def _strip_prefixes(key: str) -> str:
    """``key`` without any leading ``module.``/``backbone.``/``encoder.`` (repeatedly)."""
    changed = True
    while changed:
        changed = False
        for prefix in STRIPPED_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key


def _canonical(key: str) -> str:
    """A key with ``_`` read as ``.``: timm's features_only wrappers flatten ``stages.0`` to ``stages_0``."""
    return key.replace("_", ".")


def _unique_canonical_names(keys: Mapping[str, object]) -> dict[str, str]:
    """Canonical form → key, for the canonical forms only one key has (ambiguous ones never match)."""
    found: dict[str, list[str]] = {}
    for key in keys:
        found.setdefault(_canonical(key), []).append(key)
    return {canonical: names[0] for canonical, names in found.items() if len(names) == 1}


def _examples(names: list[str]) -> str:
    shown = ", ".join(names[:_EXAMPLES])
    return shown + (f", … ({len(names) - _EXAMPLES} more)" if len(names) > _EXAMPLES else "")


def _looks_like_original_mit(state: Mapping[str, torch.Tensor]) -> bool:
    return "patch_embed1.proj.weight" in state and "patch_embed.proj.weight" not in state


def _rename_original_mit(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SegFormer's MiT names → timm pvt_v2 names (same tensors; only the names differ)."""
    renamed = {}
    for key, value in state.items():
        new = re.sub(r"^patch_embed1\.", "patch_embed.", key)
        new = re.sub(r"^patch_embed([234])\.", lambda m: f"stages.{int(m.group(1)) - 1}.downsample.", new)
        new = re.sub(r"^block(\d)\.(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.", new)
        new = re.sub(r"^norm(\d)\.", lambda m: f"stages.{int(m.group(1)) - 1}.norm.", new)
        new = new.replace(".dwconv.dwconv.", ".dwconv.")
        renamed[new] = value
    return renamed
