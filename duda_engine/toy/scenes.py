"""Street-scene layouts for the bundled toy domains.

A layout is a list of planar faces in 3D, in painter's order: the ground first, then every object
from far to near. Coordinates are metres: X to the right of the camera, H up from the ground, Z forward
from the camera. Each face carries a Cityscapes train id (its label), a material (what it looks like)
and a colour key in [0, 1) that picks the variant of the material; ``domains.py`` projects the faces with
the layout's camera and turns materials into colours, differently per domain.

Three layout styles differ in camera and class frequencies, as GTA, SYNTHIA and Cityscapes do:
``gta`` (car-height camera, more terrain and trucks), ``synthia`` (high camera looking down, more
people, no terrain, truck or train, grass labelled vegetation) and ``city`` (Cityscapes-like, with an
ignored ego-car bonnet at the bottom).
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass, field
from functools import cache

import numpy as np

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)
IGNORE = 255

MATERIALS = (
    "sky", "road", "road_mark", "rail", "sidewalk", "kerb", "terrain", "building", "window", "window_lit",
    "shopfront", "wall", "fence", "pole", "lamp", "sign_rim", "sign_face", "sign_back", "tl_box", "tl_red",
    "tl_amber", "tl_green", "foliage", "trunk", "hedge", "skin", "hair", "top", "bottom", "car_body", "glass",
    "tyre", "tail_light", "head_light", "truck_body", "bus_body", "train_body", "bike_frame", "moto_body", "ego",
)
MAT = {name: i for i, name in enumerate(MATERIALS)}

STYLES = ("gta", "synthia", "city")

KERB_H = 0.15  # height of sidewalks above the road (m)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at (0, hc, 0) looking along +Z; image coordinates in image heights (2 wide)."""

    fl: float  # focal length, in image heights
    hc: float  # height above the ground (m)
    cx: float  # column of the vanishing point, in image heights (0 = left edge, 2 = right edge)
    vy: float  # row of the horizon, in image heights (0 = top, 1 = bottom)


@dataclass
class Face:
    """Planar polygons sharing one label, material and colour variant."""

    cls: int
    mat: int
    key: float
    polys: list[np.ndarray]  # world points (N, 3): X, H, Z; all polygons lie in one plane
    normal: tuple[float, float, float]  # the plane's normal (any sign)
    stroke: float = 0.0  # > 0: draw the polygons as lines of this width (m) instead of filling them
    closed: bool = True  # strokes only: join the last point to the first


@dataclass
class Light:
    """A point light that only shows at night (street lamps, head lights)."""

    pos: tuple[float, float, float]
    colour: tuple[float, float, float]
    power: float
    reach: float  # distance (m) at which the light has fallen to half


@dataclass
class Layout:
    style: str
    camera: Camera
    faces: list[Face]  # painter's order
    shadows: list[np.ndarray] = field(default_factory=list)  # ground polygons (N, 3) shaded on sunny days
    lights: list[Light] = field(default_factory=list)
    ego: np.ndarray | None = None  # image polygon (N, 2) in image heights: the ego-car bonnet, label 255


@dataclass(frozen=True)
class _Style:
    fl: tuple[float, float]
    hc: tuple[float, float]
    vy: tuple[float, float]
    kinds: tuple[float, float, float]  # P(urban), P(suburb), P(open)
    lanes: tuple[int, ...]
    parked: float  # P(a kerb has parked cars)
    traffic: tuple[int, int]  # moving vehicles per image
    persons: tuple[int, int]
    p_truck: float  # per image
    p_bus: float
    p_train: float
    p_moto: float
    p_rider: float
    p_bikes: float  # parked bicycles
    p_cross: float  # an intersection
    p_wall: float
    p_fence: float
    terrain: bool
    ego: bool


_STYLE = {
    "gta": _Style(fl=(1.0, 1.3), hc=(1.3, 1.8), vy=(0.42, 0.52), kinds=(0.4, 0.35, 0.25), lanes=(2, 2, 3, 4),
                  parked=0.35, traffic=(2, 7), persons=(1, 8), p_truck=0.2, p_bus=0.08, p_train=0.04, p_moto=0.12,
                  p_rider=0.2, p_bikes=0.15, p_cross=0.45, p_wall=0.35, p_fence=0.45, terrain=True, ego=False),
    "synthia": _Style(fl=(0.85, 1.15), hc=(2.5, 6.0), vy=(0.22, 0.38), kinds=(0.75, 0.25, 0.0), lanes=(2, 3, 4),
                      parked=0.5, traffic=(1, 6), persons=(4, 18), p_truck=0.0, p_bus=0.12, p_train=0.0, p_moto=0.2,
                      p_rider=0.4, p_bikes=0.35, p_cross=0.7, p_wall=0.45, p_fence=0.35, terrain=False, ego=False),
    "city": _Style(fl=(1.15, 1.5), hc=(1.2, 1.6), vy=(0.40, 0.48), kinds=(0.6, 0.3, 0.1), lanes=(2, 2, 3, 4),
                   parked=0.5, traffic=(1, 6), persons=(2, 14), p_truck=0.1, p_bus=0.1, p_train=0.05, p_moto=0.1,
                   p_rider=0.25, p_bikes=0.3, p_cross=0.5, p_wall=0.4, p_fence=0.5, terrain=True, ego=True),
}

_FRONT = (0.0, 0.0, 1.0)  # normal of planes Z = const
_SIDE = (1.0, 0.0, 0.0)  # normal of planes X = const
_UP = (0.0, 1.0, 0.0)  # normal of planes H = const


class Rng:
    """The few random draws layouts need, on Python's Mersenne Twister (much cheaper per scalar draw than
    NumPy's generators, and just as reproducible); the method names follow ``numpy.random.Generator``."""

    def __init__(self, seed: int):
        self._r = random.Random(seed)

    def random(self, size: int | None = None):
        r = self._r.random
        return r() if size is None else np.array([r() for _ in range(size)])

    def uniform(self, low=0.0, high=1.0, size: int | None = None):
        r = self._r.random
        if size is None and isinstance(low, int | float) and isinstance(high, int | float):
            return low + (high - low) * r()
        low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        shape = np.broadcast_shapes(low.shape, high.shape) if size is None else (size,)
        u = np.array([r() for _ in range(math.prod(shape))]).reshape(shape)
        return low + (high - low) * u

    def integers(self, low: int, high: int) -> int:
        return self._r.randrange(int(low), int(high))

    def choice(self, options, p=None):
        seq = range(options) if isinstance(options, int) else options
        if p is None:
            return seq[self._r.randrange(len(seq))]
        cum = list(itertools.accumulate(p))
        return seq[min(bisect.bisect_right(cum, self._r.random() * cum[-1]), len(seq) - 1)]

    def normal(self, loc: float = 0.0, scale: float = 1.0, size=None):
        g = self._r.gauss
        if size is None:
            return g(loc, scale)
        shape = (size,) if isinstance(size, int) else tuple(size)
        return np.array([g(loc, scale) for _ in range(math.prod(shape))]).reshape(shape)

    def exponential(self, scale: float = 1.0) -> float:
        return self._r.expovariate(1.0 / scale)

    def shuffle(self, seq: list) -> None:
        self._r.shuffle(seq)


# --- geometry helpers: polygons in world coordinates ----------------------------------------------------------------

def rect_x(z: float, x0: float, x1: float, h0: float, h1: float) -> np.ndarray:
    """Rectangle in the plane Z = z."""
    return np.array([[x0, h0, z], [x1, h0, z], [x1, h1, z], [x0, h1, z]], dtype=np.float64)


def rect_z(x: float, z0: float, z1: float, h0: float, h1: float) -> np.ndarray:
    """Rectangle in the plane X = x."""
    return np.array([[x, h0, z0], [x, h0, z1], [x, h1, z1], [x, h1, z0]], dtype=np.float64)


def rect_g(x0: float, x1: float, z0: float, z1: float, h: float = 0.0) -> np.ndarray:
    """Rectangle on the ground (or at height h)."""
    return np.array([[x0, h, z0], [x1, h, z0], [x1, h, z1], [x0, h, z1]], dtype=np.float64)


def on_x(z: float, x: float, uv: np.ndarray) -> np.ndarray:
    """Local drawing (u to the right, v up, metres) placed in the plane Z = z with its origin at X = x."""
    uv = np.asarray(uv, dtype=np.float64)
    out = np.empty((len(uv), 3))
    out[:, 0] = uv[:, 0] + x
    out[:, 1] = uv[:, 1]
    out[:, 2] = z
    return out


def on_z(x: float, z: float, uv: np.ndarray, forward: float = 1.0) -> np.ndarray:
    """Local drawing placed in the plane X = x, origin at Z = z; u runs along +Z (forward=1) or -Z."""
    uv = np.asarray(uv, dtype=np.float64)
    out = np.empty((len(uv), 3))
    out[:, 0] = x
    out[:, 1] = uv[:, 1]
    out[:, 2] = z + forward * uv[:, 0]
    return out


@cache
def _unit_circle(n: int, start: float, end: float) -> np.ndarray:
    t = np.linspace(start, end, n, endpoint=end - start < 2 * math.pi - 1e-6)
    return np.column_stack([np.cos(t), np.sin(t)])


def ellipse(cu: float, cv: float, ru: float, rv: float, n: int = 14, start: float = 0.0, end: float = 2 * math.pi,
            ) -> np.ndarray:
    return _unit_circle(n, start, end) * (ru, rv) + (cu, cv)


def box(u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], dtype=np.float64)


def seg_quad(p: tuple[float, float], q: tuple[float, float], width: float) -> np.ndarray:
    """A local 2D segment from p to q as a quad of the given width."""
    (pu, pv), (qu, qv) = p, q
    du, dv = qu - pu, qv - pv
    n = math.hypot(du, dv) or 1.0
    ou, ov = -dv / n * width / 2, du / n * width / 2
    return np.array([[pu + ou, pv + ov], [qu + ou, qv + ov], [qu - ou, qv - ov], [pu - ou, pv - ov]])


# --- sprites: small objects drawn in a local vertical plane ----------------------------------------------------------
# A sprite part is (cls, material, key, uv polygon, stroke width or 0, closed).

Part = tuple[int, int, float, np.ndarray, float, bool]


def _fill(cls: int, mat: str, key: float, uv: np.ndarray) -> Part:
    return (cls, MAT[mat], key, np.asarray(uv, dtype=np.float64), 0.0, True)


def _line(cls: int, mat: str, key: float, pts, width: float, closed: bool = False) -> Part:
    return (cls, MAT[mat], key, np.asarray(pts, dtype=np.float64), width, closed)


def person_parts(rng: Rng, height: float, view: str, cls: int = PERSON) -> list[Part]:
    """A standing or walking person, feet at (0, 0); view is 'front', 'back' or 'side'."""
    s = height / 1.75
    k_top, k_bottom, k_skin, k_hair = rng.random(4)
    hip, shoulder, head_r = 0.92 * s, 1.45 * s, 0.115 * s
    parts: list[Part] = []
    if view == "side":
        stride = rng.uniform(-0.3, 0.3) * s
        for foot in (stride, -stride):
            parts.append(_fill(cls, "bottom", k_bottom, seg_quad((0.0, hip), (foot, 0.02), 0.15 * s)))
        torso = np.array([[-0.12, hip - 0.05], [0.12, hip - 0.05], [0.11, shoulder], [-0.12, shoulder]]) * [s, 1]
        parts.append(_fill(cls, "top", k_top, torso))
        swing = rng.uniform(-0.25, 0.25) * s
        parts.append(_fill(cls, "top", k_top, seg_quad((0.0, shoulder - 0.05 * s), (swing, 0.85 * s), 0.08 * s)))
    else:
        spread = rng.uniform(0.05, 0.12) * s
        for side in (-1, 1):
            parts.append(_fill(cls, "bottom", k_bottom, seg_quad((side * 0.08 * s, hip),
                                                                 (side * spread, 0.02), 0.14 * s)))
        torso = np.array([[-0.17, hip - 0.06], [0.17, hip - 0.06], [0.2, shoulder], [-0.2, shoulder]]) * [s, 1]
        parts.append(_fill(cls, "top", k_top, torso))
        for side in (-1, 1):
            hand = (side * rng.uniform(0.22, 0.3) * s, rng.uniform(0.8, 0.95) * s)
            parts.append(_fill(cls, "top", k_top, seg_quad((side * 0.2 * s, shoulder - 0.04 * s), hand, 0.08 * s)))
    head_v = shoulder + 0.03 * s + head_r
    parts.append(_fill(cls, "skin", k_skin, box(-0.04 * s, 0.04 * s, shoulder - 0.02, head_v)))
    parts.append(_fill(cls, "skin", k_skin, ellipse(0.0, head_v, head_r * 0.85, head_r, 12)))
    hair = ellipse(0.0, head_v, head_r * 0.9, head_r * 1.05, 9, 0.0, math.pi)
    if view == "back":
        hair = ellipse(0.0, head_v, head_r * 0.88, head_r * 1.03, 12)
    parts.append(_fill(cls, "hair", k_hair, hair))
    return parts


def bicycle_parts(rng: Rng, view: str) -> list[Part]:
    """A bicycle, wheels on the ground around u = 0; view 'side' (u forward) or 'back'."""
    k = rng.random()
    if view != "side":
        return [_fill(BICYCLE, "tyre", k, box(-0.03, 0.03, 0.0, 0.68)),
                _fill(BICYCLE, "bike_frame", k, box(-0.035, 0.035, 0.3, 0.95)),
                _line(BICYCLE, "bike_frame", k, [(-0.3, 1.0), (0.3, 1.0)], 0.035)]
    r, w = 0.34, 0.04
    rear, front, bb, seat, head = (-0.52, r), (0.52, r), (-0.04, 0.3), (-0.2, 0.88), (0.36, 0.92)
    return [
        _line(BICYCLE, "tyre", k, ellipse(rear[0], rear[1], r, r, 16), 0.05, closed=True),
        _line(BICYCLE, "tyre", k, ellipse(front[0], front[1], r, r, 16), 0.05, closed=True),
        _line(BICYCLE, "bike_frame", k, [rear, bb, seat, rear], w),
        _line(BICYCLE, "bike_frame", k, [bb, head, front], w),
        _line(BICYCLE, "bike_frame", k, [seat, head], w),
        _line(BICYCLE, "bike_frame", k, [(-0.28, 0.93), (-0.1, 0.93)], 0.05),
        _line(BICYCLE, "bike_frame", k, [head, (0.3, 1.04), (0.42, 1.05)], w),
    ]


def motorcycle_parts(rng: Rng, view: str) -> list[Part]:
    k = rng.random()
    if view != "side":
        return [_fill(MOTORCYCLE, "tyre", k, box(-0.08, 0.08, 0.0, 0.62)),
                _fill(MOTORCYCLE, "moto_body", k, box(-0.22, 0.22, 0.42, 0.95)),
                _fill(MOTORCYCLE, "tail_light", k, box(-0.08, 0.08, 0.8, 0.88)),
                _line(MOTORCYCLE, "moto_body", k, [(-0.38, 1.08), (0.38, 1.08)], 0.05)]
    r = 0.31
    body = np.array([[-0.75, 0.5], [0.45, 0.45], [0.62, 0.78], [0.35, 0.98], [0.0, 0.9], [-0.55, 0.9], [-0.8, 0.75]])
    return [
        _fill(MOTORCYCLE, "tyre", k, ellipse(-0.7, r, r, r, 16)),
        _fill(MOTORCYCLE, "tyre", k, ellipse(0.7, r, r, r, 16)),
        _fill(MOTORCYCLE, "moto_body", k, body),
        _fill(MOTORCYCLE, "tyre", k, box(-0.25, 0.25, 0.25, 0.5)),
        _line(MOTORCYCLE, "moto_body", k, [(0.45, 0.95), (0.62, 0.35)], 0.07),
        _line(MOTORCYCLE, "moto_body", k, [(0.4, 1.15), (0.5, 0.95)], 0.05),
    ]


def rider_parts(rng: Rng, view: str, seat: float) -> list[Part]:
    """A person sitting on a two-wheeler whose saddle is at height ``seat``."""
    s = rng.uniform(0.92, 1.08)
    k_top, k_bottom, k_skin, k_hair = rng.random(4)
    parts: list[Part] = []
    if view == "side":
        hip, shoulder, hands = (-0.22, seat + 0.05), (0.05, seat + 0.58 * s), (0.38, seat + 0.15)
        knee, foot = (0.12, seat - 0.15), (0.0, 0.3)
        parts.append(_fill(RIDER, "bottom", k_bottom, seg_quad(hip, knee, 0.15)))
        parts.append(_fill(RIDER, "bottom", k_bottom, seg_quad(knee, foot, 0.12)))
        parts.append(_fill(RIDER, "top", k_top, seg_quad(hip, shoulder, 0.3)))
        parts.append(_fill(RIDER, "top", k_top, seg_quad(shoulder, hands, 0.08)))
        head = (shoulder[0] + 0.06, shoulder[1] + 0.16)
    else:
        for side in (-1, 1):
            parts.append(_fill(RIDER, "bottom", k_bottom, seg_quad((side * 0.1, seat + 0.05), (side * 0.16, 0.3), 0.13)))
        parts.append(_fill(RIDER, "top", k_top, np.array(
            [[-0.18, seat], [0.18, seat], [0.2, seat + 0.55 * s], [-0.2, seat + 0.55 * s]])))
        for side in (-1, 1):
            parts.append(_fill(RIDER, "top", k_top, seg_quad((side * 0.2, seat + 0.5 * s), (side * 0.28, seat + 0.12),
                                                            0.08)))
        head = (0.0, seat + 0.55 * s + 0.15)
    parts.append(_fill(RIDER, "skin", k_skin, ellipse(head[0], head[1], 0.1, 0.12, 12)))
    parts.append(_fill(RIDER, "hair", k_hair, ellipse(head[0], head[1] + 0.01, 0.11, 0.12, 9, 0.0, math.pi)))
    return parts


def tree_parts(rng: Rng, scale: float = 1.0, detail: int = 14) -> list[Part]:
    k, k_trunk, conifer = rng.random(3)
    trunk_h, trunk_w, crown_r = rng.uniform((1.8, 0.2, 1.3), (3.5, 0.4, 3.2)) * scale
    parts = [_fill(VEGETATION, "trunk", k_trunk, box(-trunk_w / 2, trunk_w / 2, 0.0, trunk_h + crown_r * 0.5))]
    if conifer < 0.2:
        for i in range(3):
            w = crown_r * (1.0 - 0.25 * i)
            base = trunk_h * 0.6 + i * crown_r * 0.7
            parts.append(_fill(VEGETATION, "foliage", k, np.array([[-w, base], [w, base], [0.0, base + crown_r * 1.4]])))
        return parts
    centre = trunk_h + crown_r * 0.8
    blobs = int(rng.integers(3, 7))
    offsets = rng.normal(0.0, 0.45 * crown_r, (blobs, 2))
    radii = crown_r * rng.uniform(0.45, 0.8, blobs)
    squash = rng.uniform(0.75, 1.0, blobs)
    for (du, dv), r, q in zip(offsets, radii, squash, strict=True):
        parts.append(_fill(VEGETATION, "foliage", k, ellipse(du, centre + 0.6 * dv, r, r * q, detail)))
    return parts


def sign_parts(rng: Rng, h: float, back: bool) -> list[Part]:
    """A traffic sign whose centre is at height h (u = 0)."""
    shape = rng.choice(["circle", "circle", "triangle", "square", "rect", "octagon"])
    k = rng.random()
    r = rng.uniform(0.3, 0.45)
    if shape == "circle":
        outer, inner = ellipse(0, h, r, r, 14), ellipse(0, h, r * 0.72, r * 0.72, 14)
    elif shape == "octagon":
        outer = ellipse(0, h, r, r, 8, math.pi / 8, 2 * math.pi + math.pi / 8)
        inner = ellipse(0, h, r * 0.8, r * 0.8, 8, math.pi / 8, 2 * math.pi + math.pi / 8)
    elif shape == "triangle":
        outer = np.array([[-r, h - 0.6 * r], [r, h - 0.6 * r], [0, h + 1.1 * r]])
        inner = np.array([[-0.6 * r, h - 0.4 * r], [0.6 * r, h - 0.4 * r], [0, h + 0.65 * r]])
    elif shape == "square":
        outer = np.array([[0, h - r], [r, h], [0, h + r], [-r, h]])
        inner = np.array([[0, h - 0.7 * r], [0.7 * r, h], [0, h + 0.7 * r], [-0.7 * r, h]])
    else:
        w = rng.uniform(1.0, 2.0) * r
        outer, inner = box(-w, w, h - r, h + r), box(-w + 0.06, w - 0.06, h - r + 0.06, h + r - 0.06)
    if back:
        return [_fill(SIGN, "sign_back", k, outer)]
    return [_fill(SIGN, "sign_rim", k, outer), _fill(SIGN, "sign_face", rng.random(), inner)]


def traffic_light_parts(rng: Rng, h: float, back: bool) -> list[Part]:
    """A traffic light box whose bottom is at height h, centred on u = 0."""
    w, tall = 0.32, rng.uniform(0.85, 1.0)
    k = rng.random()
    parts = [_fill(LIGHT, "tl_box", k, box(-w / 2, w / 2, h, h + tall))]
    if back:
        return parts
    lit = int(rng.integers(0, 3))
    for i, mat in enumerate(("tl_green", "tl_amber", "tl_red")):
        v = h + tall * (0.18 + 0.32 * i)
        key = 0.9 if i == lit else 0.1  # key > 0.5: the lamp is on
        parts.append(_fill(LIGHT, mat, key, ellipse(0, v, 0.1, 0.1, 10)))
    return parts


# --- the scene builder ----------------------------------------------------------------------------------------------

class _Scene:
    """Collects ground faces and depth-sorted objects for one layout."""

    def __init__(self, rng: Rng, style: str):
        self.rng = rng
        self.style = style
        self.st = _STYLE[style]
        s = self.st
        self.cam = Camera(fl=rng.uniform(*s.fl), hc=rng.uniform(*s.hc), cx=1.0 + rng.uniform(-0.15, 0.15),
                          vy=rng.uniform(*s.vy))
        self.ground: list[Face] = []
        self.items: list[tuple[float, int, list[Face]]] = []
        self.shadows: list[np.ndarray] = []
        self.lights: list[Light] = []

    # -- bookkeeping
    def add(self, depth: float, faces: list[Face]) -> None:
        if faces:
            self.items.append((depth, len(self.items), faces))

    def grass(self) -> int:
        return TERRAIN if self.st.terrain else VEGETATION

    def visible(self, x: float, z: float, margin: float = 2.0) -> bool:
        """Whether a point of the ground (with a lateral margin in metres) can be in view."""
        if z < 0.5:
            return False
        cam = self.cam
        u0 = cam.cx + cam.fl * (x - margin) / z
        u1 = cam.cx + cam.fl * (x + margin) / z
        return u1 > -0.05 and u0 < 2.05

    def place(self, parts: list[Part], z: float, x: float, flip: bool = False) -> list[Face]:
        """Sprite parts placed fronto-parallel at depth z, origin at X = x (consecutive fills of one
        material merge into one face)."""
        uv = np.concatenate([p[3] for p in parts])
        pts = np.empty((len(uv), 3))
        pts[:, 0] = x - uv[:, 0] if flip else x + uv[:, 0]
        pts[:, 1] = uv[:, 1]
        pts[:, 2] = z
        faces: list[Face] = []
        start = 0
        last = None
        for cls, mat, key, part, stroke, closed in parts:
            poly = pts[start:start + len(part)]
            start += len(part)
            if stroke == 0 and last is not None and last.stroke == 0 and (last.cls, last.mat, last.key) == (
                    cls, mat, key):
                last.polys.append(poly)
                continue
            last = Face(cls, mat, key, [poly], _FRONT, stroke, closed)
            faces.append(last)
        return faces

    # -- the street
    def build(self) -> Layout:
        rng, st = self.rng, self.st
        self.kind = ["urban", "suburb", "open"][int(rng.choice(3, p=st.kinds))]
        lane_w = rng.uniform(3.0, 3.6)
        self.lanes = int(rng.choice(st.lanes))
        width = lane_w * self.lanes
        offset = rng.uniform(0.3, 0.75) * width  # camera distance from the left road edge
        self.xl, self.xr, self.lane_w = -offset, width - offset, lane_w
        self.z_end = rng.uniform(45.0, 110.0) if self.kind == "urban" else rng.uniform(80.0, 250.0)
        self.cross = None
        if rng.random() < st.p_cross:
            zc = rng.uniform(14.0, min(60.0, self.z_end - 20.0))
            self.cross = (zc, zc + rng.uniform(8.0, 14.0))
        self.sides = {}
        for side in (-1, 1):
            verge = rng.uniform(0.8, 2.5) if rng.random() < (0.25 if self.kind == "urban" else 0.55) else 0.0
            walk = rng.uniform(1.8, 4.5) if self.kind != "open" or rng.random() < 0.5 else 0.0
            edge = self.xl if side < 0 else self.xr
            self.sides[side] = (edge, verge, walk)

        self.build_ground()
        self.build_far()
        for side in (-1, 1):
            self.build_side(side)
        self.build_poles()
        self.build_vehicles()
        self.build_people()

        faces = list(self.ground)
        for _, _, group in sorted(self.items, key=lambda t: (-t[0], t[1])):
            faces.extend(group)
        ego = self.ego_bonnet() if st.ego else None
        return Layout(self.style, self.cam, faces, self.shadows, self.lights, ego)

    def in_cross(self, z0: float, z1: float, pad: float = 0.0) -> bool:
        if self.cross is None:
            return False
        return z1 > self.cross[0] - pad and z0 < self.cross[1] + pad

    def build_ground(self) -> None:
        rng = self.rng
        far = self.z_end if self.kind == "urban" else 2000.0
        base = SIDEWALK if self.kind == "urban" else self.grass()
        base_mat = "sidewalk" if base == SIDEWALK else ("terrain" if base == TERRAIN else "foliage")
        g = self.ground
        g.append(Face(base, MAT[base_mat], rng.random(), [rect_g(-400, 400, 0.3, far, KERB_H)], _UP))
        walk_key = rng.random()
        for side, (edge, verge, walk) in self.sides.items():
            outer = edge + side * (verge + walk)
            if walk > 0:
                lo, hi = sorted((edge + side * verge, outer))
                g.append(Face(SIDEWALK, MAT["sidewalk"], walk_key, [rect_g(lo, hi, 0.3, far, KERB_H)], _UP))
            if verge > 0:
                lo, hi = sorted((edge, edge + side * verge))
                grass = self.grass()
                g.append(Face(grass, MAT["terrain" if grass == TERRAIN else "foliage"], rng.random(),
                              [rect_g(lo, hi, 0.3, far, KERB_H)], _UP))
            # kerb: the vertical step between road and sidewalk, interrupted by the cross street
            spans = [(0.3, far)]
            if self.cross:
                spans = [(0.3, self.cross[0]), (self.cross[1], far)]
            kerb = [rect_z(edge, a, b, 0.0, KERB_H) for a, b in spans if b > a]
            g.append(Face(SIDEWALK, MAT["kerb"], rng.random(), kerb, _SIDE))
        if self.cross:
            z0, z1 = self.cross
            walk = rng.uniform(2.0, 4.0)
            g.append(Face(SIDEWALK, MAT["sidewalk"], walk_key,
                          [rect_g(-400, 400, z0 - walk, z0, KERB_H), rect_g(-400, 400, z1, z1 + walk, KERB_H)], _UP))
            g.append(Face(ROAD, MAT["road"], 0.5, [rect_g(-400, 400, z0, z1)], _UP))
        road_key = rng.random()
        g.append(Face(ROAD, MAT["road"], road_key, [rect_g(self.xl, self.xr, 0.3, far)], _UP))
        self.build_markings(far)

    def build_markings(self, far: float) -> None:
        rng = self.rng
        marks = []
        dash, gap = rng.uniform(2.0, 4.0), rng.uniform(4.0, 8.0)
        width = rng.uniform(0.1, 0.18)
        stop = min(far, 150.0)
        for i in range(1, self.lanes):
            x = self.xl + i * self.lane_w
            solid = i == self.lanes // 2 and self.lanes > 2 and rng.random() < 0.6
            z = rng.uniform(0.0, dash + gap)
            while z < stop:
                z1 = stop if solid else z + dash
                if not self.in_cross(z, z1):
                    marks.append(rect_g(x - width / 2, x + width / 2, max(z, 0.3), z1, 0.005))
                elif solid:
                    marks.append(rect_g(x - width / 2, x + width / 2, max(z, 0.3), self.cross[0] - 1, 0.005))
                    z = self.cross[1] + 1
                    marks.append(rect_g(x - width / 2, x + width / 2, z, stop, 0.005))
                if solid:
                    break
                z += dash + gap
        if rng.random() < 0.6:  # edge lines
            for x in (self.xl + 0.3, self.xr - 0.3):
                spans = [(0.3, stop)] if not self.cross else [(0.3, self.cross[0] - 1), (self.cross[1] + 1, stop)]
                marks.extend(rect_g(x - 0.06, x + 0.06, a, b, 0.005) for a, b in spans if b > a)
        if self.cross:  # zebra crossing and stop line before the cross street
            z0 = self.cross[0] - rng.uniform(0.5, 1.5)
            zebra_len = rng.uniform(2.5, 4.0)
            x = self.xl + 0.3
            while x < self.xr - 0.5:
                marks.append(rect_g(x, x + 0.5, z0 - zebra_len, z0, 0.005))
                x += 1.0
            marks.append(rect_g(0.0, self.xr - 0.2, z0 - zebra_len - 1.5, z0 - zebra_len - 1.1, 0.005))
        if marks:
            self.ground.append(Face(ROAD, MAT["road_mark"], rng.random(), marks, _UP))
        if self.rng.random() < self.st.p_train * 1.5:  # tram rails (the tram itself is rare)
            self.rails = self.xl + self.lane_w * rng.integers(1, self.lanes + 1) - self.lane_w / 2
            rails = [[(self.rails + dx, 0.005, z) for z in (0.5, stop)] for dx in (-0.72, 0.72)]
            self.ground.append(Face(ROAD, MAT["rail"], rng.random(), [np.array(r) for r in rails], _UP, stroke=0.08,
                                    closed=False))
        else:
            self.rails = None

    def build_far(self) -> None:
        """What closes the street: a row of buildings, or a tree line under the horizon."""
        rng = self.rng
        if self.kind == "urban":
            z = self.z_end
            x = -300.0
            while x < 300.0:
                w = rng.uniform(8.0, 30.0)
                if self.visible(x + w / 2, z, w):
                    self.building_front(z, x, x + w, rng.uniform(8.0, 35.0), windows=True)
                x += w
            return
        for _ in range(rng.integers(8, 20)):
            z = rng.uniform(120.0, 400.0)
            x = rng.uniform(-1.2, 1.2) * z / self.cam.fl
            if abs(x - (self.xl + self.xr) / 2) < 8:
                continue
            self.add(z, self.place(tree_parts(rng, rng.uniform(1.5, 3.0), detail=8), z, x))
        if rng.random() < 0.5:  # distant buildings
            for _ in range(rng.integers(2, 8)):
                z = rng.uniform(200.0, 500.0)
                x = rng.uniform(-1.0, 1.0) * z / self.cam.fl
                w = rng.uniform(15.0, 50.0)
                self.building_front(z + 5, x, x + w, rng.uniform(10.0, 45.0), windows=False)

    def building_front(self, z: float, x0: float, x1: float, h: float, windows: bool) -> None:
        """A facade facing the camera."""
        rng = self.rng
        key = rng.random()
        faces = [Face(BUILDING, MAT["building"], key, [rect_x(z, x0, x1, 0.0, h)], _FRONT)]
        if windows:
            faces.extend(self.window_faces("x", z - 0.02, x0, x1, h))
        self.add(z, faces)

    def window_faces(self, plane: str, at: float, u0: float, u1: float, h: float) -> list[Face]:
        """Window grid on a facade spanning [u0, u1] along it and [0, h] up; the facade is the plane
        Z = at (plane 'x') or X = at (plane 'z')."""
        rng = self.rng
        floor = rng.uniform(2.8, 3.6)
        ww, wh = rng.uniform(0.7, 1.5), rng.uniform(0.9, 1.7)
        step = ww + rng.uniform(0.8, 2.5)
        shop = rng.random() < (0.5 if self.kind == "urban" else 0.1)
        first = floor * 1.4 if shop else floor * 0.35
        rows = np.arange(first, h - 0.5 - wh, floor)
        us, vs = [], []
        for v, start in zip(rows, u0 + rng.uniform(0.3, step, len(rows)), strict=True):
            u = np.arange(start, u1 - 0.3 - ww, step)
            us.append(u)
            vs.append(np.full(len(u), v))
        normal = _FRONT if plane == "x" else _SIDE
        faces = []
        if shop and u1 - u0 > 3:
            pane = rect_x(at, u0 + 0.3, u1 - 0.3, 0.3, floor * 0.9) if plane == "x" else \
                rect_z(at, u0 + 0.3, u1 - 0.3, 0.3, floor * 0.9)
            faces.append(Face(BUILDING, MAT["shopfront"], rng.random(), [pane], normal))
        if not us:
            return faces
        u, v = np.concatenate(us), np.concatenate(vs)
        quads = np.empty((len(u), 4, 3))
        along = np.stack([u, u + ww, u + ww, u], axis=1)
        quads[:, :, 1] = np.stack([v, v, v + wh, v + wh], axis=1)
        quads[:, :, 0 if plane == "x" else 2] = along
        quads[:, :, 2 if plane == "x" else 0] = at
        lit = rng.random(len(u)) < rng.uniform(0.1, 0.6)
        key = rng.random()
        if (~lit).any():
            faces.append(Face(BUILDING, MAT["window"], key, list(quads[~lit]), normal))
        if lit.any():
            faces.append(Face(BUILDING, MAT["window_lit"], key, list(quads[lit]), normal))
        return faces

    def build_side(self, side: int) -> None:
        """Blocks along one side of the street: buildings, lots with trees, walls and fences."""
        rng, st = self.rng, self.st
        edge, verge, walk = self.sides[side]
        line = edge + side * (verge + walk)  # property line
        kind = self.kind
        p_building = {"urban": 0.8, "suburb": 0.45, "open": 0.12}[kind]
        z = rng.uniform(-8.0, 2.0)
        end = self.z_end if kind == "urban" else 150.0
        prev_h = 0.0
        want_wall = rng.random() < st.p_wall
        want_fence = rng.random() < st.p_fence
        while z < end:
            if self.cross and self.cross[0] - 6 < z < self.cross[1]:
                z = self.cross[1] + 3.0
                prev_h = 0.0
                continue
            length = rng.uniform(8.0, 35.0) if kind == "urban" else rng.uniform(6.0, 25.0)
            z1 = min(z + length, end)
            if self.cross and z < self.cross[0] - 3 < z1:
                z1 = self.cross[0] - 3.0
            if rng.random() < p_building:
                h = rng.uniform(6.0, 32.0) if kind == "urban" else rng.uniform(4.0, 10.0)
                setback = 0.0 if kind == "urban" and rng.random() < 0.8 else rng.uniform(2.0, 8.0)
                x = line + side * setback
                if setback > 0:
                    self.front_yard(side, line, x, z, z1, want_wall, want_fence)
                self.building_side(side, x, z, z1, h, front=h > prev_h or setback > 0)
                prev_h = h if setback == 0 else 0.0
            else:
                self.lot(side, line, z, z1, want_wall, want_fence)
                prev_h = 0.0
            z = z1

    def building_side(self, side: int, x: float, z0: float, z1: float, h: float, front: bool) -> None:
        rng = self.rng
        key = rng.random()
        faces = [Face(BUILDING, MAT["building"], key, [rect_z(x, z0, z1, 0.0, h)], _SIDE)]
        faces.extend(self.window_faces("z", x - side * 0.02, z0, z1, h))
        self.add(z1 - 0.01, faces)
        if front and z0 > 0.5:
            far_x = x + side * 40.0
            self.add(z0, [Face(BUILDING, MAT["building"], key, [rect_x(z0, min(x, far_x), max(x, far_x), 0.0, h)],
                               _FRONT)])
        self.shadows.append(rect_g(min(x, x - side * h * 0.5), max(x, x - side * h * 0.5), z0 + 2.0, z1 + 2.0))

    def front_yard(self, side: int, line: float, x: float, z0: float, z1: float, wall: bool, fence: bool) -> None:
        rng = self.rng
        lo, hi = sorted((line, x))
        grass = self.grass()
        mat = "terrain" if grass == TERRAIN else "foliage"
        if rng.random() < 0.3:
            grass, mat = SIDEWALK, "sidewalk"
        self.ground.append(Face(grass, MAT[mat], rng.random(), [rect_g(lo, hi, z0, z1, KERB_H + 0.01)], _UP))
        self.boundary(side, line, z0, z1, wall, fence)
        if rng.random() < 0.5:
            for _ in range(rng.integers(1, 3)):
                tz = rng.uniform(z0, z1)
                tx = rng.uniform(lo, hi)
                if self.visible(tx, tz):
                    self.tree(tx, tz, rng.uniform(0.7, 1.1))

    def boundary(self, side: int, line: float, z0: float, z1: float, wall: bool, fence: bool) -> None:
        """What separates a lot from the sidewalk: wall, fence, hedge or nothing."""
        rng = self.rng
        choice = rng.random()
        if wall and choice < 0.35:
            h = rng.uniform(0.8, 2.6)
            key = rng.random()
            self.along(side, line, z0, z1, lambda a, b: [Face(WALL, MAT["wall"], key, [rect_z(line, a, b, 0, h)],
                                                               _SIDE)])
        elif fence and choice < 0.75:
            h = rng.uniform(0.9, 2.0)
            key = rng.random()
            if rng.random() < 0.5:  # solid panels
                self.along(side, line, z0, z1, lambda a, b: [Face(FENCE, MAT["fence"], key,
                                                                   [rect_z(line, a, b, 0, h)], _SIDE)])
            else:  # posts and rails
                rails = rng.integers(2, 4)
                gap = rng.uniform(1.5, 3.0)

                def rail_fence(a: float, b: float) -> list[Face]:
                    polys = [rect_z(line, a, b, h * (i + 1) / rails - 0.06, h * (i + 1) / rails + 0.03)
                             for i in range(rails)]
                    posts = np.arange(math.ceil(a / gap) * gap, b, gap)
                    polys += [rect_z(line, p - 0.05, p + 0.05, 0.0, h + 0.05) for p in posts]
                    return [Face(FENCE, MAT["fence"], key, polys, _SIDE)]

                self.along(side, line, z0, z1, rail_fence)
        elif choice < 0.9 and self.kind != "urban":
            h = rng.uniform(0.8, 1.8)
            key = rng.random()
            self.along(side, line, z0, z1, lambda a, b: [Face(VEGETATION, MAT["hedge"], key,
                                                               [rect_z(line, a, b, 0, h)], _SIDE)])

    def along(self, side: int, x: float, z0: float, z1: float, make) -> None:
        """Something long along the street, cut into short segments so that depth sorting stays right."""
        z = max(z0, 0.5)
        while z < z1:
            step = max(2.0, 0.15 * z)
            b = min(z1, z + step)
            if self.visible(x, b, 1.0) or self.visible(x, z, 1.0):
                self.add(b, make(z, b))
            z = b

    def lot(self, side: int, line: float, z0: float, z1: float, wall: bool, fence: bool) -> None:
        """An open lot: grass or paving, a few trees, a building set far back."""
        rng = self.rng
        grass = self.grass() if rng.random() < 0.75 else SIDEWALK
        mat = {TERRAIN: "terrain", VEGETATION: "foliage", SIDEWALK: "sidewalk"}[grass]
        far = line + side * 60.0
        lo, hi = sorted((line, far))
        self.ground.append(Face(grass, MAT[mat], rng.random(), [rect_g(lo, hi, z0, z1, KERB_H + 0.01)], _UP))
        self.boundary(side, line, z0, z1, wall, fence)
        for _ in range(rng.integers(0, 5) if z1 > 3.0 else 0):
            tz = rng.uniform(max(z0, 2.0), z1)
            tx = line + side * rng.uniform(1.0, 18.0)
            if self.visible(tx, tz):
                self.tree(tx, tz, rng.uniform(0.8, 1.4))
        if rng.random() < 0.6 and self.kind != "open":
            bx = line + side * rng.uniform(12.0, 30.0)
            h = rng.uniform(5.0, 25.0)
            self.building_side(side, bx, z0 - 5.0, z1 + 5.0, h, front=False)

    def tree(self, x: float, z: float, scale: float) -> None:
        parts = tree_parts(self.rng, scale)
        self.add(z, self.place(parts, z, x, flip=self.rng.random() < 0.5))
        blob = ellipse(x - 1.2 * scale, z + 0.8 * scale, 2.2 * scale, 1.6 * scale, 10)
        self.shadows.append(np.column_stack([blob[:, 0], np.zeros(len(blob)), blob[:, 1]]))

    # -- street furniture
    def build_poles(self) -> None:
        rng = self.rng
        for side, (edge, verge, _walk) in self.sides.items():
            x = edge + side * rng.uniform(0.3, 0.8)
            z = rng.uniform(2.0, 12.0)
            spacing = rng.uniform(8.0, 22.0)
            trees = self.kind != "open" and rng.random() < (0.6 if self.kind == "urban" else 0.75)
            tree_x = edge + side * (verge / 2 if verge > 0 else rng.uniform(0.8, 1.4))
            limit = min(self.z_end, 110.0)
            while z < limit:
                if not self.in_cross(z, z, 2.0) and self.visible(x, z, 1.0):
                    self.pole(side, x, z)
                if trees:
                    tz = z + spacing / 2
                    if not self.in_cross(tz, tz, 3.0) and self.visible(tree_x, tz):
                        self.tree(tree_x, tz, rng.uniform(0.8, 1.2))
                z += spacing * rng.uniform(0.7, 1.3)
        if self.cross:
            self.intersection_lights()

    def pole(self, side: int, x: float, z: float) -> None:
        rng = self.rng
        kind = rng.choice(["lamp", "sign", "sign", "bare", "light"], p=[0.35, 0.3, 0.1, 0.15, 0.1])
        width = rng.uniform(0.12, 0.25)
        key = rng.random()
        parts: list[Part] = []
        if kind == "lamp":
            h = rng.uniform(6.0, 9.0)
            reach = -side * rng.uniform(1.0, 2.5)  # the arm leans over the road
            parts.append(_fill(POLE, "pole", key, box(-width / 2, width / 2, 0.0, h)))
            parts.append(_fill(POLE, "pole", key, seg_quad((0.0, h - 0.1), (reach, h + 0.2), 0.1)))
            parts.append(_fill(POLE, "lamp", rng.random(), box(reach - 0.35, reach + 0.35, h + 0.05, h + 0.3)))
            self.lights.append(Light((x + reach, h, z), (1.0, 0.8, 0.55), rng.uniform(0.7, 1.1), rng.uniform(7, 11)))
        elif kind in ("sign", "bare"):
            h = rng.uniform(2.3, 3.6)
            parts.append(_fill(POLE, "pole", key, box(-width / 3, width / 3, 0.0, h)))
            if kind == "sign":
                back = side < 0 and rng.random() < 0.5  # signs for the other direction show their back
                for i in range(rng.integers(1, 3)):
                    parts.extend(sign_parts(rng, h - 0.35 - 0.85 * i, back))
        else:
            h = rng.uniform(2.2, 3.2)
            parts.append(_fill(POLE, "pole", key, box(-width / 2, width / 2, 0.0, h)))
            parts.extend(traffic_light_parts(rng, h - 0.2, back=side < 0 and rng.random() < 0.5))
        self.add(z, self.place(parts, z, x))

    def intersection_lights(self) -> None:
        rng = self.rng
        z0, z1 = self.cross
        for side in (-1, 1):
            edge = self.xl if side < 0 else self.xr
            for zz, facing in ((z0 - 1.0, True), (z1 + 1.0, False)):
                if rng.random() < 0.6:
                    x = edge + side * 0.6
                    parts = [_fill(POLE, "pole", 0.3, box(-0.1, 0.1, 0.0, 3.4))]
                    parts.extend(traffic_light_parts(rng, 2.4, back=not facing))
                    if side > 0 and facing and rng.random() < 0.6:  # mast arm over the road
                        span = rng.uniform(3.0, 7.0)
                        parts[0] = _fill(POLE, "pole", 0.3, box(-0.12, 0.12, 0.0, 6.2))
                        parts.append(_fill(POLE, "pole", 0.3, seg_quad((0.0, 5.9), (-span, 5.9), 0.15)))
                        parts.extend(traffic_light_parts(rng, 4.9, back=False))
                        parts[-4:] = [(c, m, k, uv + [-span + 0.2, 0], w, cl) for c, m, k, uv, w, cl in parts[-4:]]
                    if self.visible(x, zz):
                        self.add(zz, self.place(parts, zz, x))

    # -- traffic
    def build_vehicles(self) -> None:
        rng, st = self.rng, self.st
        occupied: list[tuple[float, float, float, float]] = []  # x0, x1, z0, z1

        def free(x0: float, x1: float, z0: float, z1: float) -> bool:
            return all(x1 < a - 0.3 or x0 > b + 0.3 or z1 < c - 1.0 or z0 > d + 1.0 for a, b, c, d in occupied)

        # parked cars along the kerbs
        parked = {-1: False, 1: False}
        for side in (-1, 1):
            if rng.random() >= st.parked:
                continue
            parked[side] = True
            edge = self.xl if side < 0 else self.xr
            z = rng.uniform(3.0, 12.0)
            while z < min(self.z_end, 70.0):
                if rng.random() < 0.75 and not self.in_cross(z, z + 5, 3.0):
                    w = rng.uniform(1.7, 1.9)
                    x0 = edge + 0.25 if side < 0 else edge - 0.25 - w
                    self.vehicle("car", x0, x0 + w, z, heading=1.0 if side > 0 else rng.choice([1.0, -1.0]))
                    occupied.append((x0, x0 + w, z, z + 5.0))
                z += rng.uniform(5.5, 9.0)
        # moving traffic: right lanes go away from the camera, left lanes come towards it
        plan = ["car"] * int(rng.integers(*st.traffic))
        if rng.random() < st.p_truck:
            plan += ["truck"] * int(rng.integers(1, 3))
        if rng.random() < st.p_bus:
            plan.append("bus")
        if rng.random() < st.p_moto:
            plan.append("motorcycle")
        if rng.random() < st.p_rider:
            plan += ["bicycle"] * int(rng.integers(1, 3))
        if rng.random() < st.p_train:
            plan.append("train")
        order = ("train", "bus", "truck", "motorcycle", "bicycle", "car")  # rare ones first: cars never crowd them out
        plan.sort(key=order.index)
        for kind in plan:
            for _attempt in range(8):
                lane = int(rng.integers(0, self.lanes))
                centre = self.xl + (lane + 0.5) * self.lane_w
                heading = 1.0 if centre > 0 or self.lanes == 1 or lane >= self.lanes // 2 else -1.0
                if kind == "train" and self.rails is not None:
                    centre = self.rails
                if kind == "bicycle":
                    side = 1 if heading > 0 else -1
                    kerb = self.xr if side > 0 else self.xl
                    centre = kerb - side * (3.0 if parked[side] else 1.0)
                z = 6.0 + rng.exponential(25.0 if kind == "car" else 16.0)
                if z > min(self.z_end, 120.0) - 5:
                    continue
                w = {"car": 1.8, "truck": 2.45, "bus": 2.55, "train": 2.65, "motorcycle": 0.8, "bicycle": 0.7}[kind]
                length = {"car": 4.5, "truck": 9.0, "bus": 12.0, "train": 25.0}.get(kind, 2.0)
                x0 = centre - w / 2 + rng.uniform(-0.3, 0.3)
                if not free(x0, x0 + w, z, z + length) or (kind != "train" and self.in_cross(z, z + length, 1.0)):
                    continue
                occupied.append((x0, x0 + w, z, z + length))
                if kind in ("motorcycle", "bicycle"):
                    self.two_wheeler(kind, x0 + w / 2, z, heading)
                else:
                    self.vehicle(kind, x0, x0 + w, z, heading)
                break
        if self.cross and rng.random() < 0.6:  # crossing traffic, seen from the side
            z0, z1 = self.cross
            for _ in range(rng.integers(1, 4)):
                zz = z0 + rng.uniform(0.5, max(0.6, z1 - z0 - 2.5))
                xx = rng.uniform(-25.0, 25.0)
                kind = "car" if rng.random() < 0.85 else ("bus" if rng.random() < 0.5 else "bicycle")
                if kind == "bicycle":
                    self.two_wheeler("bicycle", xx, zz, 0.0)
                elif free(xx - 2.5, xx + 2.5, zz, zz + 2):
                    self.crossing_vehicle(kind, xx, zz)
                    occupied.append((xx - 2.5, xx + 2.5, zz, zz + 2))
        for kind, p in (("bicycle", st.p_bikes), ("motorcycle", st.p_moto * 0.6)):  # parked on a sidewalk
            if rng.random() >= p:
                continue
            side = int(rng.choice([-1, 1]))
            edge, verge, walk = self.sides[side]
            if walk <= 0:
                continue
            x = edge + side * (verge + walk * rng.uniform(0.4, 0.8))
            z = 4.0 + rng.exponential(10.0)
            gap = 0.7 if kind == "bicycle" else 1.1
            for i in range(rng.integers(1, 6) if kind == "bicycle" else rng.integers(1, 3)):
                zi = z + i * gap
                parts = bicycle_parts(rng, "side") if kind == "bicycle" else motorcycle_parts(rng, "side")
                parts = [(c, m, k, uv + [0.0, KERB_H], w, cl) for c, m, k, uv, w, cl in parts]
                self.add(zi, self.place(parts, zi, x + rng.uniform(-0.2, 0.2), flip=rng.random() < 0.5))

    def box_faces(self, cls: int, mat: str, key: float, x0: float, x1: float, h0: float, h1: float, z0: float,
                  z1: float) -> list[Face]:
        """The faces of an axis-aligned box that the camera can see (farthest first)."""
        faces = []
        if h1 < self.cam.hc:
            faces.append(Face(cls, MAT[mat], key, [rect_g(x0, x1, z0, z1, h1)], _UP))
        if x0 > 0:
            faces.append(Face(cls, MAT[mat], key, [rect_z(x0, z0, z1, h0, h1)], _SIDE))
        if x1 < 0:
            faces.append(Face(cls, MAT[mat], key, [rect_z(x1, z0, z1, h0, h1)], _SIDE))
        faces.append(Face(cls, MAT[mat], key, [rect_x(z0, x0, x1, h0, h1)], _FRONT))
        return faces

    def vehicle(self, kind: str, x0: float, x1: float, z0: float, heading: float) -> None:
        """A car, truck, bus or tram driving along the street; heading +1 shows its rear, -1 its front."""
        rng = self.rng
        cls = {"car": CAR, "truck": TRUCK, "bus": BUS, "train": TRAIN}[kind]
        key = rng.random()
        side_x = x0 if x0 > 0 else (x1 if x1 < 0 else None)
        eps = 0.02 * (-1 if side_x is not None and side_x > 0 else 1)
        faces: list[Face] = []

        def side(polys: list[np.ndarray], mat: str, k: float = key) -> None:
            if side_x is not None:
                faces.append(Face(cls, MAT[mat], k, [on_z(side_x + eps, 0.0, p) for p in polys], _SIDE))

        def near(polys: list[np.ndarray], mat: str, k: float = key) -> None:
            faces.append(Face(cls, MAT[mat], k, [on_x(z0 - 0.02, 0.0, p) for p in polys], _FRONT))

        glass = rng.random()
        lights = "tail_light" if heading > 0 else "head_light"
        xm = (x0 + x1) / 2
        if kind == "car":
            length = rng.uniform(3.9, 4.8)
            z1 = z0 + length
            body_top = rng.uniform(0.95, 1.1)
            top = rng.uniform(1.42, 1.6) if rng.random() < 0.75 else rng.uniform(1.7, 1.9)
            faces += self.box_faces(cls, "car_body", key, x0, x1, 0.25, body_top, z0, z1)
            ins = 0.12
            cab0, cab1 = (z0 + rng.uniform(0.8, 1.3), z1 - rng.uniform(0.9, 1.4))
            if heading < 0:
                cab0, cab1 = z0 + (z1 - cab1), z1 - (cab0 - z0)
            faces += self.box_faces(cls, "car_body", key, x0 + ins, x1 - ins, body_top - 0.01, top, cab0, cab1)
            faces.append(Face(cls, MAT["glass"], glass, [on_x(cab0 - 0.02, 0.0, box(x0 + ins + 0.08, x1 - ins - 0.08,
                                                                                      body_top + 0.06, top - 0.06))],
                              _FRONT))
            if side_x is not None:
                xs = side_x - ins if side_x < 0 else side_x + ins  # the cabin's side
                faces.append(Face(cls, MAT["glass"], glass, [on_z(xs + eps, 0.0, box(cab0 + 0.15, cab1 - 0.15,
                                                                                    body_top + 0.06, top - 0.07))],
                                  _SIDE))
            side([ellipse(z, 0.33, 0.33, 0.33, 12) for z in (z0 + 0.85, z1 - 0.85)], "tyre", 0.5)
            near([box(x0 + 0.08, x0 + 0.38, body_top - 0.3, body_top - 0.1),
                  box(x1 - 0.38, x1 - 0.08, body_top - 0.3, body_top - 0.1)], lights)
            near([box(xm - 0.26, xm + 0.26, 0.4, 0.52)], "sign_face", 0.05)  # number plate
            near([box(x0 + 0.1, x0 + 0.3, 0.0, 0.3), box(x1 - 0.3, x1 - 0.1, 0.0, 0.3)], "tyre", 0.5)
            height = top
        elif kind == "truck":
            cargo_len, cab_len = rng.uniform(5.0, 8.0), 2.3
            cab_h, cargo_h = rng.uniform(2.6, 3.0), rng.uniform(3.2, 3.9)
            cargo_key = rng.random()
            if heading > 0:  # cargo box nearest
                z_cab = z0 + cargo_len + 0.2
                faces += self.box_faces(cls, "truck_body", key, x0 + 0.05, x1 - 0.05, 0.4, cab_h, z_cab,
                                        z_cab + cab_len)
                faces += self.box_faces(cls, "truck_body", cargo_key, x0, x1, 0.5, cargo_h, z0, z0 + cargo_len)
            else:
                faces += self.box_faces(cls, "truck_body", cargo_key, x0, x1, 0.5, cargo_h, z0 + cab_len + 0.2,
                                        z0 + cab_len + 0.2 + cargo_len)
                faces += self.box_faces(cls, "truck_body", key, x0 + 0.05, x1 - 0.05, 0.4, cab_h, z0, z0 + cab_len)
                near([box(x0 + 0.2, x1 - 0.2, cab_h * 0.55, cab_h - 0.2)], "glass", glass)
            z1 = z0 + cargo_len + cab_len + 0.2
            wheels = [z0 + 1.0, z0 + 2.3, z1 - 1.2] if heading > 0 else [z0 + 1.2, z1 - 2.3, z1 - 1.0]
            side([ellipse(z, 0.48, 0.48, 0.48, 12) for z in wheels], "tyre", 0.5)
            near([box(x0 + 0.1, x0 + 0.35, 0.0, 0.5), box(x1 - 0.35, x1 - 0.1, 0.0, 0.5)], "tyre", 0.5)
            near([box(x0 + 0.05, x0 + 0.3, 0.7, 0.9), box(x1 - 0.3, x1 - 0.05, 0.7, 0.9)], lights)
            height = cargo_h
        else:  # bus or tram
            length = rng.uniform(10.0, 12.5) if kind == "bus" else rng.uniform(18.0, 30.0)
            z1 = z0 + length
            top = rng.uniform(2.9, 3.2) if kind == "bus" else rng.uniform(3.3, 3.7)
            floor = 0.35 if kind == "bus" else 0.6
            mat = "bus_body" if kind == "bus" else "train_body"
            faces += self.box_faces(cls, mat, key, x0, x1, floor, top, z0, z1)
            band = [(z + 0.2, min(z + 1.9, z1 - 0.3)) for z in np.arange(z0 + 0.5, z1 - 1.0, 2.1)]
            side([box(a, b, 1.25, top - 0.35) for a, b in band], "glass", glass)
            if kind == "bus":
                side([ellipse(z, 0.5, 0.5, 0.5, 12) for z in (z0 + 2.3, z1 - 2.5)], "tyre", 0.5)
            else:
                side([box(z0, z1, floor, floor + 0.25)], "tyre", 0.3)  # the skirt
                pant = [(xm, top, z0 + length * 0.4), (xm, top + 0.9, z0 + length * 0.5),
                        (xm, top, z0 + length * 0.6)]
                faces.append(Face(cls, MAT["tyre"], 0.2, [np.array(pant)], _SIDE, stroke=0.06, closed=False))
            near([box(x0 + 0.15, x1 - 0.15, 1.3 if heading < 0 else 1.6, top - 0.25)], "glass", glass)
            near([box(x0 + 0.1, x0 + 0.4, 0.6, 0.85), box(x1 - 0.4, x1 - 0.1, 0.6, 0.85)], lights)
            if kind == "bus":
                near([box(x0 + 0.2, x0 + 0.55, 0.0, 0.5), box(x1 - 0.55, x1 - 0.2, 0.0, 0.5)], "tyre", 0.5)
            height = top
        self.add(z0, faces)
        self.shadows.append(rect_g(x0 - 0.15, x1 + 0.15 + 0.3 * height, z0 - 0.1, z1 + 0.3))
        if heading < 0:  # oncoming head lights light the road at night
            for xx in (x0 + 0.2, x1 - 0.2):
                self.lights.append(Light((xx, 0.7, z0 - 0.3), (1.0, 0.95, 0.85), 0.5, 3.0))

    def crossing_vehicle(self, kind: str, xc: float, z0: float) -> None:
        """A car or bus driving across the cross street: its long side faces the camera."""
        rng = self.rng
        cls = CAR if kind == "car" else BUS
        mat = "car_body" if kind == "car" else "bus_body"
        key = rng.random()
        length = rng.uniform(3.9, 4.7) if kind == "car" else rng.uniform(10.0, 12.0)
        width = 1.8 if kind == "car" else 2.5
        top = rng.uniform(1.42, 1.6) if kind == "car" else 3.0
        x0, x1 = xc - length / 2, xc + length / 2
        faces = []
        if kind == "car":
            faces += self.box_faces(cls, mat, key, x0, x1, 0.25, 1.0, z0, z0 + width)
            faces += self.box_faces(cls, mat, key, x0 + 0.9, x1 - 1.1, 0.99, top, z0 + 0.1, z0 + width - 0.1)
            faces.append(Face(cls, MAT["glass"], rng.random(),
                              [on_x(z0 + 0.08, 0.0, box(x0 + 1.05, x1 - 1.25, 1.05, top - 0.07))], _FRONT))
            wheels = [ellipse(x, 0.33, 0.33, 0.33, 14) for x in (x0 + 0.85, x1 - 0.85)]
        else:
            faces += self.box_faces(cls, mat, key, x0, x1, 0.35, top, z0, z0 + width)
            faces.append(Face(cls, MAT["glass"], rng.random(),
                              [on_x(z0 - 0.02, 0.0, box(a, a + 1.7, 1.25, top - 0.35))
                               for a in np.arange(x0 + 0.4, x1 - 1.8, 2.0)], _FRONT))
            wheels = [ellipse(x, 0.5, 0.5, 0.5, 14) for x in (x0 + 2.3, x1 - 2.5)]
        faces.append(Face(cls, MAT["tyre"], 0.5, [on_x(z0 - 0.03, 0.0, w) for w in wheels], _FRONT))
        self.add(z0, faces)

    def two_wheeler(self, kind: str, x: float, z: float, heading: float) -> None:
        """A bicycle or motorcycle with its rider; heading 0 means crossing (seen from the side)."""
        rng = self.rng
        view = "side" if heading == 0 else ("back" if heading > 0 else "front")
        vehicle = bicycle_parts(rng, view) if kind == "bicycle" else motorcycle_parts(rng, view)
        seat = 0.93 if kind == "bicycle" else 0.88
        rider = rider_parts(rng, "side" if view == "side" else "front", seat)
        flip = rng.random() < 0.5
        if view == "side":
            self.add(z, self.place(vehicle + rider, z, x, flip))
        else:
            self.add(z, self.place(vehicle, z + 0.05, x) + self.place(rider, z, x))
        self.shadows.append(rect_g(x - 0.4, x + 0.6, z - 0.3, z + 1.5))

    # -- people
    def build_people(self) -> None:
        rng, st = self.rng, self.st
        n = int(rng.integers(st.persons[0], st.persons[1] + 1))
        placed = 0
        while placed < n:
            group = int(min(n - placed, rng.choice([1, 1, 1, 2, 2, 3, 4])))
            placed += group
            roll = rng.random()
            if self.cross and roll < 0.25:  # on the zebra crossing
                z = self.cross[0] - rng.uniform(1.5, 3.5)
                x = rng.uniform(self.xl, self.xr)
            elif roll < 0.08:  # in the road
                z = 4.0 + rng.exponential(15.0)
                x = rng.uniform(self.xl + 0.3, self.xr - 0.3)
            else:
                side = int(rng.choice([-1, 1]))
                edge, verge, walk = self.sides[side]
                if walk <= 0:
                    continue
                z = 3.0 + rng.exponential(14.0)
                x = edge + side * (verge + rng.uniform(0.3, walk - 0.2))
            for i in range(group):
                xi, zi = x + rng.uniform(-0.6, 0.6) * (i > 0), z + rng.uniform(-0.8, 0.8) * (i > 0)
                if zi < 2.5 or zi > 90 or not self.visible(xi, zi, 0.5):
                    continue
                on_walk = self.ground_height(xi)
                view = str(rng.choice(["front", "back", "side"]))
                parts = person_parts(rng, rng.uniform(1.5, 1.95) if rng.random() < 0.9 else rng.uniform(1.0, 1.4),
                                     view)
                parts = [(c, m, k, uv + [0.0, on_walk], w, cl) for c, m, k, uv, w, cl in parts]
                self.add(zi, self.place(parts, zi, xi, flip=rng.random() < 0.5))
                self.shadows.append(rect_g(xi - 0.25, xi + 0.7, zi - 0.2, zi + 0.4, on_walk))

    def ground_height(self, x: float) -> float:
        return 0.0 if self.xl <= x <= self.xr else KERB_H

    def ego_bonnet(self) -> np.ndarray:
        rng = self.rng
        top = rng.uniform(0.88, 0.93)
        c = self.cam.cx + rng.uniform(-0.1, 0.1)
        xs = np.linspace(-0.05, 2.05, 24)
        ys = top + 0.25 * ((xs - c) / 1.4) ** 2
        return np.vstack([np.column_stack([xs, ys]), [[2.05, 1.05], [-0.05, 1.05]]])


def sample_layout(seed: int, style: str) -> Layout:
    """A random street layout, fully determined by ``seed``; ``style`` is one of STYLES."""
    if style not in _STYLE:
        raise ValueError(f"unknown layout style {style!r}; known: {', '.join(STYLES)}")
    return _Scene(Rng(seed), style).build()
