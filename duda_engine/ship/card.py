"""The model card written beside an export: what the files are, what they were trained on, how well and how fast they run.

``model_card(...)`` builds it as a dict (``model_card.json``); ``card_markdown`` renders the same dict for
people (``model_card.md``). Numbers are taken from the results, never recomputed here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from duda_engine.checkpoint import replaced_on_success
from duda_engine.config import DatasetConfig, ExperimentConfig
from duda_engine.data.classes import ClassSpec
from duda_engine.models import get_preset

CARD_JSON, CARD_MARKDOWN = "model_card.json", "model_card.md"


def dataset_description(d: DatasetConfig) -> dict[str, Any]:
    described = {"kind": d.kind, "train_split": d.train_split, "val_split": d.val_split}
    for key in ("domain", "toy_size", "condition", "root", "resize"):
        value = getattr(d, key)
        if value and (key != "toy_size" or d.kind == "toy"):
            described[key] = value
    return described


def teachers(config: ExperimentConfig) -> list[str]:
    """Who taught the student, by method."""
    if config.method == "self_training":
        return ["EMA of the student (mean teacher)"]
    if config.method == "duda":
        names = {"ema": f"EMA of the auxiliary {config.model.auxiliary}", "auxiliary": f"auxiliary {config.model.auxiliary}",
                 "student_ema": "EMA of the student"}
        return [names.get(t, t) for t in config.duda.teachers] + [f"frozen: {Path(p).name}" for p in config.duda.frozen_teachers]
    return []


def iou_or_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def model_card(
    *,
    config: ExperimentConfig,
    classes: ClassSpec,
    preset: str,
    step: int | None,
    input_size: tuple[int, int],
    files: list[dict[str, Any]],
    baselines: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``files``: one dict per exported file (name, sha256, size, accuracy, speed...), as ``package`` measured them.
    ``baselines``: name -> ``{"miou": float, "per_class": {class: IoU}}`` of runs to compare with (optional)."""
    normalization = get_preset(preset).normalization
    return {
        "name": config.name,
        "model": {"preset": preset, "description": get_preset(preset).description, "step": step},
        "classes": [{"id": k, "name": name, "colour": list(classes.colours[k])} for k, name in enumerate(classes.names)],
        "ignore_index": classes.ignore_index,
        "input": {
            "height": input_size[0],
            "width": input_size[1],
            "layout": "float32 RGB [B, 3, H, W] in [0, 1]",
            "normalisation": "inside the model: (image - mean) / std",
            "mean": list(normalization.mean),
            "std": list(normalization.std),
        },
        "output": "logits [B, K, H, W]; the class of a pixel is the argmax over K",
        "data": {"source": dataset_description(config.source), "target": dataset_description(config.target)},
        "training": {"method": config.method, "teachers": teachers(config), "iterations": config.train.iterations,
                     "crop_size": list(config.train.crop_size), "seed": config.seed},
        "files": files,
        "baselines": {name: {"miou": iou_or_none(b.get("miou")),
                             "per_class": {k: iou_or_none(v) for k, v in (b.get("per_class") or {}).items()}}
                      for name, b in (baselines or {}).items()},
        "config": config.to_dict(),
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def card_markdown(card: dict[str, Any]) -> str:
    """The card for people: the same numbers as the JSON."""
    files, baselines = card["files"], card["baselines"]
    inp = card["input"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"Student **{card['model']['preset']}** ({card['model']['description']}), trained by **{card['training']['method']}**"
        f" for {card['training']['iterations']} iterations (seed {card['training']['seed']}); "
        f"teachers: {', '.join(card['training']['teachers']) or 'none'}.",
        f"Source data: `{json.dumps(card['data']['source'])}`; target data: `{json.dumps(card['data']['target'])}`.",
        "",
        "## Input and output",
        f"- {inp['layout']}, {inp['height']}x{inp['width']} (HxW), any batch size; normalised {inp['normalisation']}, "
        f"mean {inp['mean']}, std {inp['std']}.",
        f"- {card['output']}.",
        "",
        "## Files",
        "| file | kind | size (MiB) | sha256 | target mIoU | agreement with float | images/s (HxW) |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in files:
        speeds = ", ".join(f"{s['images_per_second']:.1f} ({s['height']}x{s['width']}, p50 {s['latency_p50_ms']:.0f} ms, "
                           f"p95 {s['latency_p95_ms']:.0f} ms)" for s in f.get("speed", []))
        agreement = f.get("argmax_agreement_with_float")
        lines.append(f"| {f['name']} | {f['kind']} | {f['size_bytes'] / 2**20:.2f} | `{f['sha256']}` | {_cell(f.get('target_miou'))} "
                     f"| {'-' if agreement is None else f'{agreement:.2%}'} | {speeds or '-'} |")
    columns = [(f["name"], f.get("per_class") or {}, f.get("target_miou")) for f in files if f.get("target_miou") is not None]
    columns += [(name, b["per_class"], b["miou"]) for name, b in baselines.items()]
    if columns:
        lines += ["", "## Target IoU per class", "| class | " + " | ".join(c[0] for c in columns) + " |",
                  "|---|" + "---|" * len(columns),
                  "| **mIoU** | " + " | ".join(_cell(c[2]) for c in columns) + " |"]
        for cls in card["classes"]:
            lines.append(f"| {cls['name']} (rgb {tuple(cls['colour'])}) | "
                         + " | ".join(_cell(c[1].get(cls["name"])) for c in columns) + " |")
    lines += ["", "## Engine config", "```json", json.dumps(card["config"], indent=2), "```", ""]
    return "\n".join(lines)


def write_card(out_dir: Path, card: dict[str, Any]) -> tuple[Path, Path]:
    """``model_card.json`` and ``model_card.md`` in ``out_dir``, each written atomically."""
    for name, text in ((CARD_JSON, json.dumps(card, indent=2) + "\n"), (CARD_MARKDOWN, card_markdown(card))):
        with replaced_on_success(out_dir / name) as tmp:
            tmp.write_text(text)
    return out_dir / CARD_JSON, out_dir / CARD_MARKDOWN
