"""Class lists: names, palette colours and the ignore value of a label space."""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassSpec:
    """A label space: class ``k`` is named ``names[k]`` and drawn in ``colours[k]``."""

    names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if len(self.names) < 2:
            raise ValueError("a class list needs at least two classes")
        if len(self.names) != len(self.colours):
            raise ValueError(f"{len(self.names)} class names but {len(self.colours)} colours")
        if len(set(self.names)) != len(self.names):
            raise ValueError("class names must be unique")
        if 0 <= self.ignore_index < len(self.names):
            raise ValueError(f"ignore value {self.ignore_index} collides with a class id")
        for colour in self.colours:
            if len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
                raise ValueError(f"colour {colour} is not an RGB triple in 0..255")

    @property
    def num_classes(self) -> int:
        return len(self.names)


CITYSCAPES = ClassSpec(
    names=(
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
        "motorcycle", "bicycle",
    ),
    colours=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
)

# SYNTHIA has no terrain, truck or train: reported over 16 classes, and 13 without wall, fence, pole.
SYNTHIA_16_CLASSES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
SYNTHIA_13_CLASSES = (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
