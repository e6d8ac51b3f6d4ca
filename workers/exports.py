"""A worker's side of an export: package a run's student with the engine and record what it measured.

``package_export(export_id, worker_host)`` claims the export, runs ``duda_engine.ship.package`` into a
temporary folder beside the export's final folder (float ONNX verified against PyTorch, int8 calibrated
on target training images and checked against the float file, both re-measured on the target's
validation set, timed at the training crop and 1024x512, and the model card; beside them the
student as a ``torch.export`` program, checked against PyTorch the same way), renames the folder into
place, and stores the files (size, sha256) and the numbers. Any failure is the export's error.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)


def package_export(export_id: int, worker_host: str) -> str:
    from duda_engine.checkpoint import sha256_file
    from duda_engine.config_loading import config_from_dict
    from duda_engine.export import export_student
    from duda_engine.ship import package
    from duda_engine.ship.card import CARD_JSON, CARD_MARKDOWN
    from duda_engine.ship.packaging import default_speed_sizes
    from webapp.runs.services import exports

    close_old_connections()
    job = exports.export_claim(export_id=export_id, worker_host=worker_host)
    if job is None:
        log.info("export %s: nothing to do (gone, or taken by another worker)", export_id)
        return "skipped"
    run_folder = job.run.folder
    final = run_folder / job.export.folder
    scratch = final.parent / f".{final.name}-{uuid.uuid4().hex[:8]}.tmp"
    try:
        config = config_from_dict(job.run.config)
        scratch.mkdir(parents=True)
        result = package(
            job.checkpoint_path, scratch, config,
            int8=True, accuracy=True, card=True,
            calibration_images=settings.EXPORT_CALIBRATION_IMAGES,
            speed_sizes=default_speed_sizes(config),
            speed_runs=settings.EXPORT_SPEED_RUNS,
            baselines=job.baselines,
            stem=f"run{job.run.pk}-student",
        )
        exported = result.float_file  # the program at the ONNX file's size, checked the same way
        program = export_student(job.checkpoint_path, scratch / f"run{job.run.pk}-student.pt2", fmt="torch_export",
                                 height=exported.height, width=exported.width)
        if final.exists():
            shutil.rmtree(final)
        scratch.rename(final)  # the files appear together, complete
        named = {"float": result.float_file.path.name, "int8": result.int8_file.path.name,
                 "torch_export": program.path.name, "card_json": CARD_JSON, "card_md": CARD_MARKDOWN}
        files = []
        for kind, name in named.items():
            path = final / name
            digest = result.sha256.get(name) or sha256_file(path)
            files.append(exports.ExportedFile(kind=kind, name=name, path=str(path.relative_to(run_folder)),
                                              size=path.stat().st_size, sha256=digest))
        report = result.to_dict()
        speed = [{"kind": kind, **entry} for kind, entries in report["speed"].items() for entry in entries]
        close_old_connections()
        exports.export_record(export_id=export_id, files=files, float_file=report["float"], int8_file=report["int8"],
                              accuracy=report["accuracy"], speed=speed, card=result.card)
        return "succeeded"
    except Exception as error:  # noqa: BLE001 - every failure becomes the export's error message
        log.exception("export %s failed", export_id)
        shutil.rmtree(scratch, ignore_errors=True)
        close_old_connections()
        exports.export_fail(export_id=export_id, message=f"{type(error).__name__}: {error}")
        return "failed"
    finally:
        shutil.rmtree(Path(scratch), ignore_errors=True)
