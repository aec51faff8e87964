"""Synthetic street scenes: the kit's embedded data set, written in the Cityscapes layout.

Each image is a procedurally drawn street: a horizon and a vanishing point, a perspective road
with lane markings, sidewalks, terrain strips, facades with windows, a far skyline, sky with
clouds, and objects scaled by depth and painted far-to-near (occlusion order): cars and trucks on
the road, people on the sidewalks, trees, poles carrying traffic signs and lights, fences, and
sometimes the ego vehicle's hood (an ignored label, as in Cityscapes). Textures, lighting changes,
blur and sensor noise make capacity matter: large regions need context (road vs sidewalk vs
terrain share colours), thin objects need resolution (poles are one or two pixels wide).

Everything is drawn from ``numpy.random.default_rng((seed, split, index))``: the same seed gives
byte-identical PNG files. Labels are Cityscapes *label ids*; the real Cityscapes reader loads them.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage
from tqdm.auto import tqdm

from fasterseg.data.labels import LABEL_ID, label_id_colors

CITIES = {"train": ("synthburg", "pixelstadt"), "val": ("renderton",)}
FRAME = 19  # Cityscapes annotates frame 19 of each 30-frame snippet
GENERATOR_VERSION = 2  # 2: instance ids; content-addressed folders

# label ids used by the generator
ROAD, SIDEWALK, BUILDING, WALL, FENCE = (LABEL_ID[n] for n in ("road", "sidewalk", "building", "wall", "fence"))
POLE, LIGHT, SIGN, VEG, TERRAIN = (
    LABEL_ID[n] for n in ("pole", "traffic light", "traffic sign", "vegetation", "terrain")
)
SKY, PERSON, CAR, TRUCK, BICYCLE = (LABEL_ID[n] for n in ("sky", "person", "car", "truck", "bicycle"))
EGO = LABEL_ID["ego vehicle"]

# per-label texture: (fine noise amplitude, coarse noise amplitude), in 0..255 units
_TEXTURE = {
    ROAD: (10, 14),
    SIDEWALK: (9, 10),
    BUILDING: (7, 18),
    WALL: (8, 10),
    FENCE: (10, 6),
    POLE: (4, 4),
    LIGHT: (4, 4),
    SIGN: (3, 3),
    VEG: (26, 30),
    TERRAIN: (16, 20),
    SKY: (1.5, 10),
    PERSON: (8, 8),
    CAR: (5, 6),
    TRUCK: (6, 8),
    BICYCLE: (5, 4),
    EGO: (3, 4),
}


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate: size (H, W pixels), counts per split and the seed."""

    height: int = 128
    width: int = 256
    num_train: int = 40
    num_val: int = 12
    seed: int = 0

    def digest(self) -> str:
        d = dict(self.__dict__, version=GENERATOR_VERSION)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def spec_of(data_cfg) -> SyntheticSpec:
    """The `SyntheticSpec` of a `DataConfig`."""
    return SyntheticSpec(data_cfg.image_height, data_cfg.image_width, data_cfg.num_train, data_cfg.num_val,
                         data_cfg.seed)


class _Canvas:
    """Paints shapes into a label-id map and an RGB base-colour image at the same time."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.label = Image.new("L", (w, h), 0)
        self.rgb = Image.new("RGB", (w, h), (0, 0, 0))
        self._dl = ImageDraw.Draw(self.label)
        self._dr = ImageDraw.Draw(self.rgb)

    def polygon(self, pts, label: int, color) -> None:
        pts = [(float(x), float(y)) for x, y in pts]
        self._dl.polygon(pts, fill=label)
        self._dr.polygon(pts, fill=_rgb(color))

    def rect(self, x0, y0, x1, y1, label: int, color) -> None:
        self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], label, color)

    def ellipse(self, x0, y0, x1, y1, label: int, color) -> None:
        box = [float(min(x0, x1)), float(min(y0, y1)), float(max(x0, x1)), float(max(y0, y1))]
        self._dl.ellipse(box, fill=label)
        self._dr.ellipse(box, fill=_rgb(color))

    def paint(self, pts, color) -> None:
        """Colour only (same label underneath): windows, markings, lamps."""
        self._dr.polygon([(float(x), float(y)) for x, y in pts], fill=_rgb(color))


def _rgb(c) -> tuple[int, int, int]:
    return tuple(int(np.clip(v, 0, 255)) for v in c)


def _jitter(rng, base, amount=18):
    return np.asarray(base, float) + rng.normal(0, amount, 3)


def _smooth_noise(rng, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1], (h, w): a random grid upsampled bicubically."""
    gh, gw = max(2, cells * h // max(h, w) + 2), max(2, cells * w // max(h, w) + 2)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.BICUBIC)
    return np.clip(np.asarray(img), -1.5, 1.5)


def render_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one street scene. Returns (RGB image (h, w, 3) uint8, label ids (h, w) uint8)."""
    cv = _Canvas(h, w)
    hy = h * rng.uniform(0.36, 0.47)  # horizon row
    vx = w * rng.uniform(0.38, 0.62)  # vanishing point column

    def ground_x(x_bottom, y):
        """Column at row y of the ground line through (x_bottom, h) and the vanishing point."""
        t = (y - hy) / (h - hy)
        return vx + (x_bottom - vx) * t

    # sky with a vertical gradient (painted per row band), then the far skyline
    top, bottom = _jitter(rng, (70, 120, 190), 15), _jitter(rng, (175, 200, 225), 12)
    bands = 48
    for i in range(bands):
        y0, y1 = hy * i / bands, hy * (i + 1) / bands + 1
        cv.rect(0, y0, w, y1, SKY, top + (bottom - top) * (i + 0.5) / bands)
    for _ in range(rng.integers(1, 4)):  # clouds: sky label, lighter colour
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, hy * 0.6), rng.uniform(0.05, 0.15) * w
        for _ in range(4):
            dx, dy = rng.normal(0, r * 0.5), rng.normal(0, r * 0.15)
            c = _jitter(rng, (225, 230, 236), 6)
            cv._dr.ellipse([cx + dx - r, cy + dy - r * 0.3, cx + dx + r, cy + dy + r * 0.3], fill=_rgb(c))
    x = -rng.uniform(0, 0.1) * w
    while x < w:  # far skyline: hazy blocks standing on the horizon
        bw = rng.uniform(0.04, 0.12) * w
        bh = rng.uniform(0.04, 0.2) * h
        c = _jitter(rng, (150, 155, 165), 12)
        cv.rect(x, hy - bh, x + bw, hy + 2, BUILDING, c)
        x += bw * rng.uniform(0.8, 1.05)
    if rng.random() < 0.6:  # distant tree line
        for _ in range(rng.integers(3, 9)):
            cx, r = rng.uniform(0, w), rng.uniform(0.01, 0.04) * w
            cv.ellipse(cx - r, hy - 1.6 * r, cx + r, hy + 2, VEG, _jitter(rng, (80, 110, 60), 12))

    # ground plane: everything below the horizon starts as terrain, then road and sidewalks
    cv.rect(0, hy, w, h, TERRAIN, _jitter(rng, (110, 140, 80), 14))
    half_road = rng.uniform(0.45, 0.75) * w
    road_l, road_r = vx - half_road + rng.normal(0, 0.05 * w), vx + half_road + rng.normal(0, 0.05 * w)
    side_l = road_l - rng.uniform(0.18, 0.45) * w
    side_r = road_r + rng.uniform(0.18, 0.45) * w
    curb_l = side_l - (rng.uniform(0.05, 0.3) * w if rng.random() < 0.5 else 0)  # terrain strip
    curb_r = side_r + (rng.uniform(0.05, 0.3) * w if rng.random() < 0.5 else 0)
    sidewalk_c = _jitter(rng, (150, 140, 135), 12)
    cv.polygon([(vx, hy), (side_l, h), (road_l, h)], SIDEWALK, sidewalk_c)
    cv.polygon([(vx, hy), (road_r, h), (side_r, h)], SIDEWALK, sidewalk_c + rng.normal(0, 6, 3))
    road_c = _jitter(rng, (95, 92, 98), 10)
    cv.polygon([(vx - 1, hy), (vx + 1, hy), (road_r, h), (road_l, h)], ROAD, road_c)
    # lane markings: dashed centre line and two edge lines (still road)
    centre = (road_l + road_r) / 2
    n_dash = 10
    for i in range(n_dash):
        if i % 2:
            continue
        t0, t1 = (i / n_dash) ** 1.7, ((i + 1) / n_dash) ** 1.7
        y0, y1 = hy + (h - hy) * t0, hy + (h - hy) * t1
        wd0, wd1 = 0.004 * w + 0.012 * w * t0, 0.004 * w + 0.012 * w * t1
        x0, x1 = ground_x(centre, y0), ground_x(centre, y1)
        cv.paint([(x0 - wd0, y0), (x0 + wd0, y0), (x1 + wd1, y1), (x1 - wd1, y1)], (225, 225, 215))
    for edge, sgn in ((road_l, 1), (road_r, -1)):
        e2 = edge + sgn * 0.025 * w
        cv.paint([(vx, hy + 1), (edge, h), (e2, h)], (210, 210, 200))

    # facades on both sides, split into buildings of different heights, with windows
    for side in (-1, 1):
        outer = curb_l if side < 0 else curb_r
        edge_x = 0.0 if side < 0 else float(w)
        # where the ground line of this side meets the image edge
        if (outer - vx) * side > 0 and abs(outer - vx) > 1e-3:
            t_edge = (edge_x - vx) / (outer - vx)
            y_edge = min(h + 0.0, hy + (h - hy) * t_edge)
        else:
            y_edge = float(h)
        if rng.random() < 0.12:
            continue  # an open side: terrain and sky only
        n_build = rng.integers(2, 5)
        cuts = np.sort(rng.uniform(0.0, 1.0, n_build - 1))
        cuts = np.concatenate([[0.0], cuts, [1.0]])
        far = 0.9 * rng.uniform(0.75, 0.97)  # fraction of the way from the edge to the vanishing point
        for b in range(n_build):
            f0, f1 = cuts[b] * far, cuts[b + 1] * far  # 0 = image edge, far = near the vanishing point
            xa, xb = edge_x + (vx - edge_x) * f0, edge_x + (vx - edge_x) * f1
            ya, yb = y_edge + (hy - y_edge) * f0, y_edge + (hy - y_edge) * f1  # ground line
            height_near = rng.uniform(0.45, 1.3) * (y_edge - hy + 0.4 * h)
            ta, tb = ya - height_near * (1 - f0), yb - height_near * (1 - f1)
            kind = BUILDING if rng.random() < 0.9 else WALL
            fc = _jitter(
                rng, rng.choice([(150, 120, 100), (170, 160, 140), (120, 110, 115), (190, 180, 165), (130, 90, 75)]), 14
            )
            cv.polygon([(xa, ya), (xb, yb), (xb, tb), (xa, ta)], kind, fc)
            if kind == BUILDING:  # windows in perspective: a grid in facade coordinates
                rows, cols = rng.integers(3, 8), rng.integers(2, 6)
                wc = _jitter(rng, (60, 75, 95), 15)
                for i in range(cols):
                    for j in range(rows):
                        u0, u1 = (i + 0.25) / cols, (i + 0.75) / cols
                        v0, v1 = (j + 0.2) / rows, (j + 0.6) / rows

                        def pt(u, v):
                            xx = xa + (xb - xa) * u
                            yg, yt = ya + (yb - ya) * u, ta + (tb - ta) * u
                            return xx, yg + (yt - yg) * (1 - v * 0.85 - 0.05)

                        cv.paint([pt(u0, v0), pt(u1, v0), pt(u1, v1), pt(u0, v1)], wc + rng.normal(0, 10, 3))

    # objects, painted far to near: (ground row, kind, lateral hint)
    objects: list[tuple[float, str, float]] = []
    for _ in range(rng.integers(2, 7)):
        objects.append((hy + (h - hy) * rng.uniform(0.05, 1.05) ** 1.6, "car", rng.uniform(0.1, 0.9)))
    if rng.random() < 0.3:
        objects.append((hy + (h - hy) * rng.uniform(0.1, 0.7), "truck", rng.uniform(0.2, 0.8)))
    for _ in range(rng.integers(1, 7)):
        objects.append((hy + (h - hy) * rng.uniform(0.05, 1.0) ** 1.5, "person", rng.choice([-1, 1])))
    for _ in range(rng.integers(2, 7)):
        objects.append((hy + (h - hy) * rng.uniform(0.05, 0.95) ** 1.4, "pole", rng.choice([-1, 1])))
    for _ in range(rng.integers(0, 5)):
        objects.append((hy + (h - hy) * rng.uniform(0.05, 0.9) ** 1.4, "tree", rng.choice([-1, 1])))
    if rng.random() < 0.4:
        objects.append((hy + (h - hy) * rng.uniform(0.3, 0.9), "fence", rng.choice([-1, 1])))
    if rng.random() < 0.25:
        objects.append((hy + (h - hy) * rng.uniform(0.3, 1.0), "bicycle", rng.choice([-1, 1])))
    objects.sort(key=lambda o: o[0])

    for yb, kind, hint in objects:
        s = (yb - hy) / (h - hy)  # depth scale: 0 at the horizon, 1 at the bottom row
        if kind in ("car", "truck"):
            rl, rr = ground_x(road_l, yb), ground_x(road_r, yb)
            cx = rl + (rr - rl) * hint
            cw = (0.42 if kind == "car" else 0.55) * w * s * rng.uniform(0.85, 1.15)
            ch = cw * (0.55 if kind == "car" else 0.85)
            _draw_vehicle(cv, rng, cx, yb, cw, ch, CAR if kind == "car" else TRUCK)
        elif kind == "person":
            edge, outer = (road_l, side_l) if hint < 0 else (road_r, side_r)
            px = ground_x(edge + (outer - edge) * rng.uniform(0.15, 0.85), yb)
            ph = 0.5 * h * s * rng.uniform(0.85, 1.15)
            _draw_person(cv, rng, px, yb, ph)
        elif kind == "bicycle":
            edge, outer = (road_l, side_l) if hint < 0 else (road_r, side_r)
            px = ground_x(edge + (outer - edge) * rng.uniform(0.2, 0.8), yb)
            _draw_bicycle(cv, rng, px, yb, 0.22 * h * s)
        elif kind == "pole":
            edge, outer = (road_l, side_l) if hint < 0 else (road_r, side_r)
            px = ground_x(edge + (outer - edge) * rng.uniform(0.05, 0.25), yb)
            _draw_pole(cv, rng, px, yb, 0.95 * h * s * rng.uniform(0.8, 1.2), w)
        elif kind == "tree":
            edge, outer = (road_l, side_l) if hint < 0 else (road_r, side_r)
            px = ground_x(edge + (outer - edge) * rng.uniform(0.3, 0.9), yb)
            _draw_tree(cv, rng, px, yb, 1.1 * h * s * rng.uniform(0.7, 1.3))
        elif kind == "fence":
            outer = side_l if hint < 0 else side_r
            x0, x1 = ground_x(outer, hy + (yb - hy) * 0.3), ground_x(outer, min(h, yb * 1.3))
            y0, y1 = hy + (yb - hy) * 0.3, min(h, yb * 1.3)
            fh0, fh1 = 0.12 * h * (y0 - hy) / (h - hy), 0.12 * h * (y1 - hy) / (h - hy)
            fc = _jitter(rng, (150, 130, 110), 10)
            cv.polygon([(x0, y0), (x1, y1), (x1, y1 - fh1), (x0, y0 - fh0)], FENCE, fc)

    if rng.random() < 0.3:  # ego vehicle's hood (ignored in evaluation, like Cityscapes)
        hh = rng.uniform(0.06, 0.12) * h
        cv.ellipse(-0.2 * w, h - hh, 1.2 * w, h + hh * 1.2, EGO, _jitter(rng, (40, 42, 48), 8))

    labels = np.asarray(cv.label, np.uint8).copy()
    image = _finish(rng, np.asarray(cv.rgb, np.float32), labels)
    return image, labels


def _draw_vehicle(cv: _Canvas, rng, cx, yb, cw, ch, label):
    body = _jitter(
        rng,
        rng.choice(
            [(160, 20, 20), (30, 40, 120), (200, 200, 205), (40, 40, 45), (120, 125, 130), (230, 210, 60), (20, 90, 50)]
        ),
        15,
    )
    x0, x1 = cx - cw / 2, cx + cw / 2
    yl = yb - ch * (0.55 if label == CAR else 0.75)  # top of the lower body
    cv.polygon([(x0, yb - ch * 0.12), (x1, yb - ch * 0.12), (x1, yl), (x0, yl)], label, body)
    if label == CAR:
        cv.polygon(
            [(x0 + cw * 0.12, yl), (x1 - cw * 0.12, yl), (x1 - cw * 0.22, yb - ch), (x0 + cw * 0.22, yb - ch)],
            label,
            body * 0.95,
        )
        cv.paint(
            [
                (x0 + cw * 0.17, yl),
                (x1 - cw * 0.17, yl),
                (x1 - cw * 0.25, yb - ch * 0.92),
                (x0 + cw * 0.25, yb - ch * 0.92),
            ],
            _jitter(rng, (50, 60, 75), 8),
        )
    else:
        cv.rect(x0 + cw * 0.05, yb - ch, x1 - cw * 0.05, yl, label, body * 1.05)
        cv.paint(
            [
                (x0 + cw * 0.1, yl - ch * 0.05),
                (x1 - cw * 0.1, yl - ch * 0.05),
                (x1 - cw * 0.1, yl - ch * 0.2),
                (x0 + cw * 0.1, yl - ch * 0.2),
            ],
            (45, 55, 70),
        )
    r = ch * 0.14
    for wx in (x0 + cw * 0.2, x1 - cw * 0.2):
        cv.ellipse(wx - r, yb - 2 * r, wx + r, yb, label, (25, 25, 28))
    lamp = (235, 230, 200) if rng.random() < 0.5 else (200, 30, 30)
    for lx in (x0 + cw * 0.04, x1 - cw * 0.12):
        cv.paint(
            [
                (lx, yl + ch * 0.05),
                (lx + cw * 0.08, yl + ch * 0.05),
                (lx + cw * 0.08, yl + ch * 0.12),
                (lx, yl + ch * 0.12),
            ],
            lamp,
        )


def _draw_person(cv: _Canvas, rng, px, yb, ph):
    shirt = _jitter(rng, rng.choice([(180, 40, 40), (40, 80, 160), (220, 220, 210), (30, 30, 30), (200, 150, 60)]))
    trousers = _jitter(rng, rng.choice([(40, 45, 70), (30, 30, 30), (110, 100, 90)]), 10)
    skin = _jitter(rng, rng.choice([(225, 190, 160), (160, 110, 80), (100, 70, 50)]), 8)
    bw = ph * 0.28
    step = rng.uniform(-0.08, 0.08) * ph
    for dx in (-bw * 0.22 + step, bw * 0.22 - step):  # legs
        cv.polygon(
            [
                (px + dx - bw * 0.12, yb),
                (px + dx + bw * 0.12, yb),
                (px + bw * 0.1 * np.sign(dx + 1e-6), yb - ph * 0.48),
                (px, yb - ph * 0.48),
            ],
            LABEL_ID["person"],
            trousers,
        )
    cv.ellipse(px - bw / 2, yb - ph * 0.82, px + bw / 2, yb - ph * 0.42, LABEL_ID["person"], shirt)
    r = ph * 0.08
    cv.ellipse(px - r, yb - ph, px + r, yb - ph + 2 * r, LABEL_ID["person"], skin)


def _draw_bicycle(cv: _Canvas, rng, px, yb, size):
    c = _jitter(rng, (30, 30, 35), 10)
    r = size * 0.35
    for wx in (px - size * 0.45, px + size * 0.45):
        cv.ellipse(wx - r, yb - 2 * r, wx + r, yb, BICYCLE, c)
    cv.polygon([(px - size * 0.45, yb - r), (px + size * 0.45, yb - r), (px, yb - 2.2 * r)], BICYCLE, (150, 20, 20))


def _draw_pole(cv: _Canvas, rng, px, yb, ph, w):
    pw = max(1.0, 0.006 * w * ph / (0.95 * cv.h))
    pc = _jitter(rng, (120, 120, 118), 10)
    cv.rect(px - pw / 2, yb - ph, px + pw / 2, yb, POLE, pc)
    kind = rng.random()
    sz = max(2.0, ph * 0.1)
    top = yb - ph
    if kind < 0.45:  # a traffic sign: disc, triangle or panel
        shape = rng.integers(3)
        col = rng.choice([(200, 30, 30), (30, 70, 170), (230, 200, 30), (235, 235, 235)])
        if shape == 0:
            cv.ellipse(px - sz, top, px + sz, top + 2 * sz, SIGN, _jitter(rng, col, 8))
        elif shape == 1:
            cv.polygon([(px - sz, top + 2 * sz), (px + sz, top + 2 * sz), (px, top)], SIGN, _jitter(rng, col, 8))
        else:
            cv.rect(px - 1.4 * sz, top, px + 1.4 * sz, top + 1.4 * sz, SIGN, _jitter(rng, col, 8))
    elif kind < 0.75:  # a traffic light: dark box with three lamps
        bx = px + pw / 2
        cv.rect(bx, top, bx + 0.9 * sz, top + 2.4 * sz, LIGHT, (35, 35, 30))
        lit = rng.integers(3)
        for i, col in enumerate(((220, 40, 30), (230, 180, 30), (40, 200, 80))):
            cy = top + (0.45 + 0.75 * i) * sz
            c = col if i == lit else (70, 60, 55)
            cv.paint(
                [
                    (bx + 0.2 * sz, cy - 0.25 * sz),
                    (bx + 0.7 * sz, cy - 0.25 * sz),
                    (bx + 0.7 * sz, cy + 0.25 * sz),
                    (bx + 0.2 * sz, cy + 0.25 * sz),
                ],
                c,
            )
    else:  # a street lamp arm (still pole)
        cv.rect(px, top, px + sz * 1.5, top + pw, POLE, pc)


def _draw_tree(cv: _Canvas, rng, px, yb, th):
    tw = max(1.0, th * 0.04)
    cv.rect(px - tw / 2, yb - th * 0.5, px + tw / 2, yb, VEG, _jitter(rng, (90, 70, 50), 10))
    green = _jitter(rng, (70, 115, 45), 15)
    for _ in range(rng.integers(3, 7)):
        r = th * rng.uniform(0.12, 0.22)
        cx, cy = px + rng.normal(0, th * 0.12), yb - th * rng.uniform(0.55, 0.85)
        cv.ellipse(cx - r, cy - r, cx + r, cy + r, VEG, green + rng.normal(0, 10, 3))


def _finish(rng, base: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Textures per class, illumination, colour cast, optical blur and sensor noise."""
    h, w = labels.shape
    fine = rng.normal(0, 1, (h, w)).astype(np.float32)
    coarse = _smooth_noise(rng, h, w, 24)
    amp_f = np.zeros(256, np.float32)
    amp_c = np.zeros(256, np.float32)
    for lab, (f, c) in _TEXTURE.items():
        amp_f[lab], amp_c[lab] = f, c
    tex = amp_f[labels] * fine + amp_c[labels] * coarse
    img = base + tex[..., None]
    light = 1.0 + 0.3 * _smooth_noise(rng, h, w, 4)  # broad shadows and sunlit patches
    img = img * light[..., None] * rng.uniform(0.6, 1.25)  # exposure
    img = img * rng.uniform(0.9, 1.1, 3)  # colour cast
    img = np.clip(img, 0, 255).astype(np.uint8)
    pil = Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.8))))
    img = np.asarray(pil, np.float32) + rng.normal(0, rng.uniform(2, 7), (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def file_stem(split: str, index: int) -> tuple[str, str]:
    """(city, Cityscapes-style stem ``<city>_<seq:06d>_<frame:06d>``) of image `index` in `split`."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f"{city}_{index:06d}_{FRAME:06d}"


MARKER = "synthetic.json"  # written by the kit into every tree it generates: the spec and every file with its hash
JOURNAL = "journal.jsonl"  # a tree being generated: one line per file written, with its hash
LOCK = ".generate.lock"
PARTIAL = ".partial-"
#: Cityscapes label ids whose objects are counted as instances (``hasInstances``)
INSTANCE_IDS = tuple(LABEL_ID[n] for n in ("person", "rider", "car", "truck", "bus", "caravan", "trailer", "train",
                                             "motorcycle", "bicycle"))


class ForeignDataError(ValueError):
    """A folder holds files the kit did not generate; the kit refuses to write into or delete it."""


def tree_name(spec: SyntheticSpec) -> str:
    """The folder name of a spec's tree under ``data.root``: its content, so two specs never share a folder."""
    return f"{spec.height}x{spec.width}-{spec.num_train}+{spec.num_val}-seed{spec.seed}-v{GENERATOR_VERSION}"


def instance_ids(labels: np.ndarray) -> np.ndarray:
    """Cityscapes ``*_gtFine_instanceIds.png`` content (uint16) of a label-id map: label id for stuff, and
    label id x 1000 + k for the k-th object of an instance class (its connected regions, numbered from 0)."""
    out = labels.astype(np.uint16)
    for lid in INSTANCE_IDS:
        comp, n = ndimage.label(labels == lid)
        if n:
            out = np.where(comp > 0, lid * 1000 + comp - 1, out).astype(np.uint16)
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate(root: str | Path, spec: SyntheticSpec, progress: bool = True) -> Path:
    """Write the data set into `root` (which must be new or empty) in the Cityscapes layout; returns `root`.

    Files: ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` (RGB) and ``gtFine/<split>/<city>/<stem>_gtFine_*``:
    ``labelIds`` (label ids), ``instanceIds`` (16-bit, as the official evaluation reads them) and ``color``. Each
    file is written and then journaled with its sha256 (``journal.jsonl``); ``synthetic.json`` (the spec, its
    digest and every file with its hash) is written last, so a tree without it is known to be incomplete.
    """
    if spec.height % 32 or spec.width % 32:
        raise ValueError(f"image size {spec.height}x{spec.width} must be a multiple of 32 (the network's stride)")
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise ForeignDataError(f"{root} is not empty; the synthetic data set is only generated into a new or empty "
                               "folder")
    root.mkdir(parents=True, exist_ok=True)
    colors = label_id_colors()
    jobs = [("train", i) for i in range(spec.num_train)] + [("val", i) for i in range(spec.num_val)]
    files = []
    with open(root / JOURNAL, "a") as journal:
        for split, i in tqdm(jobs, desc="synthetic street scenes", disable=not progress):
            rng = np.random.default_rng([spec.seed, 0 if split == "train" else 1, i])
            image, labels = render_scene(rng, spec.height, spec.width)
            for rel, array in zip(spec_stems(split, i), (image, labels, instance_ids(labels), colors[labels])):
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path)
                entry = {"path": rel, "sha256": _sha256(path)}
                journal.write(json.dumps(entry) + "\n")
                journal.flush()
                files.append(entry)
    marker = dict(spec.__dict__, digest=spec.digest(), version=GENERATOR_VERSION, complete=True, files=files)
    (root / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    (root / JOURNAL).unlink()
    return root


def spec_stems(split: str, index: int) -> list[str]:
    """Relative paths of image `index` of `split`: image, label ids, instance ids, colour labels."""
    city, stem = file_stem(split, index)
    return [f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png",
            f"gtFine/{split}/{city}/{stem}_gtFine_instanceIds.png", f"gtFine/{split}/{city}/{stem}_gtFine_color.png"]


def spec_files(spec: SyntheticSpec) -> list[str]:
    """Relative paths of every file `generate` writes for `spec`."""
    return [rel for split, n in (("train", spec.num_train), ("val", spec.num_val)) for i in range(n)
            for rel in spec_stems(split, i)]


def read_marker(tree: Path) -> dict | None:
    """The kit's marker of a complete tree (spec, digest, files with hashes), or None."""
    try:
        m = json.loads((Path(tree) / MARKER).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return m if isinstance(m, dict) and m.get("complete") and "digest" in m else None


def owned_entries(tree: Path) -> list[dict]:
    """The files a (possibly partial) tree of the kit's says it wrote: its marker's list, else its journal."""
    m = read_marker(tree)
    if m is not None and isinstance(m.get("files"), list):
        return m["files"]
    entries = []
    try:
        for line in (Path(tree) / JOURNAL).read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a crash: what follows was never completed
    except (OSError, UnicodeDecodeError):
        pass
    return entries


def delete_owned(tree: Path, entries: list[dict]) -> int:
    """Delete the files `entries` list inside `tree`, each proven the kit's at deletion time: a relative path that
    resolves inside `tree` through no symbolic link, a regular file, and the recorded sha256. Every entry is checked
    before anything is deleted; one that fails refuses the whole deletion (`ForeignDataError` naming it). Empty
    folders left behind are removed. Returns the number of files deleted."""
    tree = Path(tree)
    base = tree.resolve()
    checked = []
    for e in entries:
        rel = e.get("path") if isinstance(e, dict) else None
        if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ForeignDataError(f"{tree}: the kit's list names {rel!r}, which is not a path inside the tree; "
                                   "nothing was deleted")
        p = tree / rel
        for part in [p, *p.parents]:
            if part == tree or len(part.parts) <= len(tree.parts):
                break
            if part.is_symlink():
                raise ForeignDataError(f"{tree}: {part} is a symbolic link; the kit deletes nothing through links "
                                       "(nothing was deleted)")
        if not p.exists():
            continue
        if not p.resolve().is_relative_to(base) or not p.is_file():
            raise ForeignDataError(f"{tree}: {rel} is not a file inside the tree; nothing was deleted")
        if _sha256(p) != e.get("sha256"):
            raise ForeignDataError(f"{tree}: {rel} is not the file the kit wrote (its content changed); nothing was "
                                   "deleted")
        checked.append(p)
    for p in checked:
        p.unlink()
    for d in sorted((q for q in tree.rglob("*") if q.is_dir() and not q.is_symlink()), key=lambda q: -len(q.parts)):
        if not any(d.iterdir()):
            d.rmdir()
    return len(checked)


def _remove_partial(partial: Path) -> None:
    """A tree whose generation stopped (no marker): delete what its journal proves the kit wrote, then the folder
    (left in place, with a warning, when anything else is in it)."""
    try:
        delete_owned(partial, owned_entries(partial))
        for name in (JOURNAL,):
            (partial / name).unlink(missing_ok=True)
        partial.rmdir()
    except (ForeignDataError, OSError) as e:
        warnings.warn(f"left {partial} in place: {e}", stacklevel=3)


def _check_parent(parent: Path) -> None:
    """Refuse a `data.root` that holds anything but the kit's trees (a real data set, say)."""
    old_layout = (parent / MARKER).exists()  # a tree of kit versions before content-addressed folders
    for p in parent.iterdir():
        if p.name in (LOCK,) or PARTIAL in p.name:
            continue
        if p.is_dir() and not p.is_symlink() and ((p / MARKER).exists() or (p / JOURNAL).exists()):
            continue
        if old_layout and p.name in (MARKER, ".synthetic.lock", "leftImg8bit", "gtFine"):
            continue
        raise ForeignDataError(
            f"data.root {parent} holds data the kit did not generate (e.g. {p.name}); the synthetic data set is only "
            "written into a folder of its own. For real Cityscapes set data.dataset=cityscapes; for synthetic scenes "
            "choose another folder, e.g. data.root=data/synthetic/mine")


def tree_path(parent: str | Path, spec: SyntheticSpec) -> Path:
    """Where the tree of `spec` lives under `parent` (``data.root``)."""
    return Path(parent) / tree_name(spec)


def ensure(parent: str | Path, spec: SyntheticSpec, progress: bool = True) -> Path:
    """The tree of `spec` under `parent` (``data.root``): ``<parent>/<tree_name(spec)>``, generated once and never
    rewritten, so a run reading it is never disturbed by another spec's generation. A new tree is generated into a
    temporary sibling and renamed into place when complete; parallel processes wait on a lock inside `parent`;
    partial trees left by a crash are removed, file by file, as `delete_owned` proves them the kit's.
    `parent` must be new, empty or hold only the kit's trees (`ForeignDataError` otherwise)."""
    parent = Path(parent)
    tree = tree_path(parent, spec)
    m = read_marker(tree)
    if m is not None and m.get("digest") == spec.digest():
        return tree
    if parent.exists() and not parent.is_dir():
        raise ForeignDataError(f"data.root {parent} is a file; point data.root at a folder")
    if tree.exists():
        raise ForeignDataError(f"{tree} exists but holds no complete tree of this spec ({MARKER} missing or "
                               "another digest); move it away and run again")
    parent.mkdir(parents=True, exist_ok=True)
    _check_parent(parent)
    with open(parent / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if read_marker(tree) is not None:  # another process generated it while we waited
            return tree
        for stale in parent.glob(f".*{PARTIAL}*"):
            _remove_partial(stale)
        partial = parent / f".{tree.name}{PARTIAL}{os.getpid()}"
        generate(partial, spec, progress=progress)
        os.rename(partial, tree)
    return tree
