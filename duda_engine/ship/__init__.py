"""From a trained student to files you can ship: float and int8 ONNX, their target mIoU and CPU speed, a model card.

``package(checkpoint, out_dir)`` (:mod:`duda_engine.ship.packaging`) does it all; the modules beside it do one
job each: ``runtime`` runs an exported file (and measures its target mIoU), ``int8`` quantises one,
``speed`` times one, ``card`` writes the model card.
"""

from duda_engine.ship.packaging import PackageResult, package

__all__ = ["PackageResult", "package"]
