"""Draw one pedestrian image with numpy: background crop, body parts as masks, then the camera's effects.

Coordinates: ``v`` runs down the person from 0 (top of head) to 1 (soles), ``x`` across from the body's
centre line; both are in units of the person's height in pixels. Parts are painted into a label map in
z-order, coloured through a small table, shaded, and composited over the camera's background.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from .styles import VIEWS, CameraStyle, IdentityStyle

BG, SKIN, HAIR, UPPER, UPPER2, LOWER, SHOES, BAG, HAT, PACK = range(10)


@dataclass(frozen=True)
class Pose:
    """Per-image variation of one person in one camera."""

    view: str          # front | back | side
    mirror: bool       # flip the whole image left-right
    scale: float       # person height / image height
    dx: float          # horizontal offset of the body centre, fraction of the image width
    dy: float          # vertical offset, fraction of the image height
    swing: float       # walking phase in [-1, 1]
    pan: int           # x offset of the background window in the camera panorama


def sample_pose(rng: np.random.Generator, identity: IdentityStyle, camera: CameraStyle, width: int,
                misaligned: bool = False) -> Pose:
    """Draw a pose; ``misaligned`` gives the bad detections of junk/distractor images (zoomed or half out)."""
    scale = camera.scale * identity.height * rng.uniform(0.93, 1.07)
    dx, dy = camera.shift + rng.normal(0.0, 0.05), rng.normal(0.0, 0.025)
    if misaligned:
        scale *= rng.uniform(1.3, 2.0) if rng.random() < 0.5 else rng.uniform(0.5, 0.7)
        dx += (1 if rng.random() < 0.5 else -1) * rng.uniform(0.25, 0.5)
    return Pose(
        view=VIEWS[min(int(np.searchsorted(np.cumsum(camera.views), rng.random())), 2)],
        mirror=bool(rng.random() < 0.5),
        scale=float(scale),
        dx=float(dx),
        dy=float(dy),
        swing=float(rng.uniform(-1.0, 1.0)),
        pan=int(rng.integers(0, camera.background.shape[1] - width + 1)),
    )


def _box(v: np.ndarray, x: np.ndarray, v0: float, v1: float, x0: float, x1: float) -> np.ndarray:
    """(H, W) mask of the rectangle ``v0 <= v < v1``, ``x0 <= x < x1``."""
    return (v >= v0) & (v < v1) & (x >= x0) & (x < x1)


def _paint_person(label: np.ndarray, v: np.ndarray, x: np.ndarray, ident: IdentityStyle, pose: Pose) -> None:
    """Paint part codes into ``label`` (H, W) in z-order; ``v`` is (H, 1), ``x`` is (1, W)."""
    side, back = pose.view == "side", pose.view == "back"
    b, hip, sw = ident.build, ident.hip, 0.12 * ident.build
    head_ry, head_rx = ident.head / 2, ident.head * 0.4
    head_v = head_ry + 0.005
    feet, leg_len = 0.955, 0.955 - ident.hip
    torso_w = 0.65 * sw if side else sw
    # long hair hangs behind the head (over the back in a back view, painted after the torso then)
    long_hair = _box(v, x, head_v, 0.27, -head_rx * 1.1, head_rx * 1.1) if ident.hair_style == "long" else None
    if long_hair is not None and not back:
        label[long_hair] = HAIR
    # legs: sheared by the walking phase, more in a side view
    t = np.clip((v - hip) / leg_len, 0.0, 1.0)
    leg_half, spread = 0.045 * b, (0.13 if side else 0.025) * pose.swing * t
    centres = (-0.02 * b, 0.02 * b) if side else (-0.05 * b, 0.05 * b)
    for centre, sign in zip(centres, (1, -1)):
        xc = x - centre - sign * spread
        label[(v >= hip) & (v < feet) & (np.abs(xc) < leg_half)] = LOWER
        label[(v >= feet) & (v < 1.0) & (xc > -leg_half * 1.2) & (xc < leg_half * (2.0 if side else 1.2))] = SHOES
    knee = hip + 0.45 * leg_len
    if ident.lower_type == "shorts":
        label[(label == LOWER) & (v >= knee)] = SKIN
    elif ident.lower_type == "skirt":
        label[(label == LOWER) & (v >= knee)] = SKIN
        label[(v >= hip) & (v < knee + 0.03) & (np.abs(x) < 0.1 * b + (v - hip) * 0.3)] = LOWER
    # torso, tapering from the shoulders to the hips (down to mid-thigh for a coat)
    bottom = hip + (0.3 * leg_len if ident.coat else 0.0)
    half = torso_w * (1.0 - 0.15 * np.clip((v - 0.15) / (hip - 0.15), 0.0, 1.0))
    torso = (v >= 0.15) & (v < bottom) & (np.abs(x) < half)
    label[torso] = UPPER
    if ident.backpack is not None and back:
        label[_box(v, x, 0.17, 0.42, -0.8 * sw, 0.8 * sw)] = PACK
    if ident.backpack is not None and side:
        label[_box(v, x, 0.17, 0.42, -torso_w - 0.07, -torso_w + 0.01)] = PACK
    if long_hair is not None and back:
        label[long_hair] = HAIR
    # arms: at the sides, or one swinging arm in a side view; hands are skin, short sleeves end early
    arm_t = np.clip((v - 0.16) / 0.36, 0.0, 1.0)
    arm_x = [0.0] if side else [-(sw + 0.02 * b), sw + 0.02 * b]
    for ax in arm_x:
        xa = x - ax - (0.08 if side else 0.01) * pose.swing * arm_t
        arm = (v >= 0.16) & (v < 0.52) & (np.abs(xa) < 0.022 * b)
        sleeve = arm & (v < (0.5 if ident.long_sleeves else 0.27))
        label[arm] = SKIN
        label[sleeve] = UPPER2 if ident.pattern == "raglan" else UPPER
    # pattern on the torso (the logo only shows from the front)
    upper = label == UPPER
    rel = (v - 0.15) / ident.period
    if ident.pattern == "hstripes":
        label[upper & (np.floor(rel) % 2 == 1)] = UPPER2
    elif ident.pattern == "vstripes":
        label[upper & (np.floor(x / ident.period + 0.5) % 2 == 1)] = UPPER2
    elif ident.pattern == "checks":
        label[upper & ((np.floor(rel) + np.floor(x / ident.period)) % 2 == 1)] = UPPER2
    elif ident.pattern == "band":
        label[upper & (v >= 0.25) & (v < 0.25 + 1.5 * ident.period)] = UPPER2
    elif ident.pattern == "logo" and pose.view == "front":
        label[upper & _box(v, x, 0.21, 0.3, -0.045, 0.045)] = UPPER2
    if ident.backpack is not None and pose.view == "front":
        for sx in (-0.55 * sw, 0.55 * sw):
            label[_box(v, x, 0.15, 0.4, sx - 0.012, sx + 0.012)] = PACK
    # head: face from the front, hair from the back, half and half from the side
    head = ((v - head_v) / head_ry) ** 2 + (x / head_rx) ** 2 < 1.0
    label[head] = SKIN
    hair_line = {"short": head_v - 0.35 * head_ry, "long": head_v - 0.2 * head_ry,
                 "none": head_v - 0.8 * head_ry}[ident.hair_style]
    if back and ident.hair_style != "none":
        label[head & (v < head_v + 0.6 * head_ry)] = HAIR
    else:
        label[head & ((v < hair_line) | ((x < -0.2 * head_rx) if side else False))] = HAIR
    if ident.hat is not None:
        label[_box(v, x, 0.0, head_v - 0.3 * head_ry, -head_rx * 1.1, head_rx * 1.1)] = HAT
        brim = _box(v, x, head_v - 0.45 * head_ry, head_v - 0.3 * head_ry, -head_rx * 1.1,
                    head_rx * (2.0 if side else 1.4))
        label[brim] = HAT
    if ident.bag is not None and not (side and ident.bag_side < 0):
        bag_side = 0.0 if side else ident.bag_side * (-1 if back else 1)
        bx = bag_side * (sw + 0.05 * b) + (0.04 if side else 0.0)
        label[_box(v, x, 0.42, 0.56, bx - 0.045, bx + 0.045)] = BAG


def _occlude(img: np.ndarray, rng: np.random.Generator) -> None:
    """Cover the bottom or one side with a textured object (a car, a bench, a pole, another person)."""
    h, w, _ = img.shape
    colour = rng.uniform(0.05, 0.9, 3)
    texture = 1.0 + 0.15 * np.sin(np.arange(h)[:, None] * rng.uniform(0.2, 1.2))
    if rng.random() < 0.5:
        top = int(h * rng.uniform(0.6, 0.85))
        x0, x1 = sorted(rng.integers(0, w + 1, 2))
        x0, x1 = (0, w) if x1 - x0 < w // 3 else (x0, x1)
        img[top:, x0:x1] = colour * texture[top:, :, None]
    else:
        width = int(w * rng.uniform(0.15, 0.35))
        x0 = 0 if rng.random() < 0.5 else w - width
        y0 = int(h * rng.uniform(0.0, 0.4))
        img[y0:, x0:x0 + width] = colour * texture[y0:, :, None]


def render_image(
    rng: np.random.Generator,
    camera: CameraStyle,
    identity: IdentityStyle | None,
    height: int,
    width: int,
    misaligned: bool = False,
) -> Image.Image:
    """One ``width x height`` RGB image of ``identity`` (None: background only) as ``camera`` would take it.

    The caller saves it with ``quality=camera.jpeg_quality``.
    """
    pose = sample_pose(rng, identity, camera, width, misaligned) if identity is not None else None
    img = camera.background[:, (pose.pan if pose else int(rng.integers(0, 2 * width + 1))):][:, :width].copy()
    for _ in range(int(rng.integers(0, 3))):  # clutter: objects and passers-by in the background
        y0, x0 = int(rng.integers(0, height - 8)), int(rng.integers(-width // 4, width))
        colour = rng.uniform(0.05, 0.95, 3)  # drawn before the extent, as the generator always has
        y1, x1 = y0 + int(rng.integers(8, height // 2)), x0 + int(rng.integers(4, width // 3))
        img[y0:y1, max(x0, 0):x1] = colour
    if identity is not None:
        ph = pose.scale * height
        v = ((np.arange(height, dtype=np.float32) + 0.5 - (height - ph) / 2 - pose.dy * height) / ph)[:, None]
        x = ((np.arange(width, dtype=np.float32) + 0.5 - width / 2 - pose.dx * width) / ph)[None, :]
        label = np.zeros((height, width), np.int8)
        _paint_person(label, v, x, identity, pose)
        table = np.array([(0, 0, 0), identity.skin, identity.hair, identity.upper, identity.upper2, identity.lower,
                          identity.shoes, identity.bag or (0, 0, 0), identity.hat or (0, 0, 0),
                          identity.backpack or (0, 0, 0)], np.float32)
        table[1:] *= np.exp(rng.normal(0.0, 0.04, (9, 1))).astype(np.float32)  # fabric/lighting variation per image
        shading = 1.0 - 0.3 * np.minimum(np.abs(x) / 0.14, 1.0) ** 2     # a rounded body, lit from the front
        body = label > 0
        img[body] = table[label[body]] * np.broadcast_to(shading, body.shape)[body][:, None]
    if rng.random() < camera.occlusion:
        _occlude(img, rng)
    gradient = 1.0 + rng.uniform(-0.25, 0.25) * (np.arange(width, dtype=np.float32) / width - 0.5)
    gain = camera.gain * rng.uniform(0.85, 1.15)
    img *= np.asarray(camera.cast, np.float32) * np.float32(gain)
    img *= gradient[None, :, None]
    levels = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    gamma_lut = (np.linspace(0.0, 1.0, 256, dtype=np.float32) ** camera.gamma) * 255.0
    top, left = int(rng.integers(0, height + 1)), int(rng.integers(0, width + 1))
    img = gamma_lut[levels] + camera.noise_field[top:top + height, left:left + width]
    if pose is not None and pose.mirror:
        img = img[:, ::-1]
    out = Image.fromarray((np.clip(img, 0.0, 255.0) + 0.5).astype(np.uint8))
    blur = camera.blur * rng.uniform(0.7, 1.3)
    return out.filter(ImageFilter.GaussianBlur(blur)) if blur > 0.3 else out
