"""Random appearance of identities and cameras, per domain.

An :class:`IdentityStyle` is what stays fixed for a person across images (body proportions, clothing colours
and patterns, hair, accessories). A :class:`CameraStyle` is what a camera imposes on every image it takes
(background, illumination, colour cast, blur, noise, JPEG quality, typical viewpoint, framing, occlusion).
Domain 1 draws both from different distributions than domain 0 (darker, blurrier, warmer cameras indoors;
more muted colours, coats and check patterns), so a model trained on one domain meets a shift on the other.
All sizes are fractions of the person's height in pixels; colours are RGB in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Colour = tuple[float, float, float]

# Named colours and their weights per domain: common colours (black, denim, grey) recur across identities on
# purpose, so that colour alone rarely identifies a person.
UPPER_COLOURS = {
    "black": (0.07, 0.07, 0.08), "white": (0.9, 0.9, 0.88), "grey": (0.5, 0.5, 0.52), "navy": (0.1, 0.13, 0.33),
    "blue": (0.18, 0.36, 0.75), "red": (0.72, 0.12, 0.12), "green": (0.16, 0.48, 0.22), "yellow": (0.9, 0.78, 0.2),
    "brown": (0.42, 0.28, 0.17), "beige": (0.8, 0.72, 0.58), "pink": (0.9, 0.55, 0.65), "purple": (0.42, 0.2, 0.52),
    "orange": (0.93, 0.5, 0.13), "teal": (0.1, 0.48, 0.48), "olive": (0.4, 0.42, 0.18), "maroon": (0.42, 0.1, 0.15),
}
LOWER_COLOURS = {
    "black": (0.07, 0.07, 0.08), "denim": (0.2, 0.29, 0.48), "grey": (0.45, 0.45, 0.47), "khaki": (0.63, 0.56, 0.4),
    "white": (0.88, 0.88, 0.86), "navy": (0.1, 0.13, 0.3), "brown": (0.38, 0.26, 0.16), "red": (0.65, 0.12, 0.14),
    "olive": (0.36, 0.38, 0.18),
}
UPPER_WEIGHTS = (
    {"black": 16, "white": 12, "grey": 10, "navy": 8, "blue": 8, "red": 7, "green": 6, "yellow": 4, "brown": 5,
     "beige": 5, "pink": 5, "purple": 4, "orange": 4, "teal": 4},
    {"black": 20, "grey": 14, "navy": 10, "brown": 10, "olive": 9, "maroon": 8, "beige": 8, "white": 6, "teal": 5,
     "purple": 4, "blue": 3, "red": 3},
)
LOWER_WEIGHTS = (
    {"black": 30, "denim": 25, "grey": 12, "khaki": 10, "white": 5, "navy": 8, "brown": 5, "red": 2},
    {"black": 30, "grey": 18, "brown": 14, "olive": 12, "navy": 10, "denim": 8, "khaki": 8},
)
SKIN = ((0.95, 0.8, 0.68), (0.87, 0.68, 0.54), (0.72, 0.52, 0.38), (0.55, 0.37, 0.25), (0.36, 0.24, 0.16))
HAIR = ((0.05, 0.04, 0.04), (0.22, 0.14, 0.08), (0.42, 0.28, 0.15), (0.8, 0.66, 0.38), (0.6, 0.6, 0.6))
HAIR_WEIGHTS = ((45, 25, 12, 10, 8), (35, 30, 20, 5, 10))
PATTERNS = ("solid", "hstripes", "vstripes", "checks", "band", "raglan", "logo")
PATTERN_WEIGHTS = ((40, 14, 8, 8, 10, 10, 10), (28, 8, 4, 24, 16, 10, 10))
LOWER_TYPES = ("trousers", "shorts", "skirt")
LOWER_TYPE_WEIGHTS = ((70, 18, 12), (78, 6, 16))
HAIR_STYLES = ("short", "long", "none")
VIEWS = ("front", "back", "side")
BACKGROUND_COLOURS = (
    ((0.62, 0.62, 0.6), (0.45, 0.5, 0.35), (0.7, 0.45, 0.35), (0.55, 0.6, 0.68), (0.75, 0.73, 0.65), (0.35, 0.38, 0.4)),
    ((0.3, 0.26, 0.22), (0.42, 0.36, 0.28), (0.25, 0.27, 0.3), (0.5, 0.42, 0.3), (0.2, 0.2, 0.2), (0.55, 0.5, 0.45)),
)


def _pick(rng: np.random.Generator, names: dict[str, int] | tuple, weights=None):
    """Draw one key of ``names`` (a dict name -> weight) or one element of a tuple with ``weights``."""
    if isinstance(names, dict):
        keys, w = list(names), np.array(list(names.values()), dtype=float)
        return keys[rng.choice(len(keys), p=w / w.sum())]
    w = np.array(weights, dtype=float)
    return names[rng.choice(len(names), p=w / w.sum())]


def _jitter(rng: np.random.Generator, colour: Colour, amount: float) -> Colour:
    return tuple(float(c) for c in np.clip(np.asarray(colour) + rng.normal(0.0, amount, 3), 0.0, 1.0))


@dataclass(frozen=True)
class IdentityStyle:
    """What stays fixed for one person. Sizes are fractions of the person's height."""

    height: float        # person height relative to the camera's framing, ~0.9..1.05
    build: float         # width multiplier, ~0.85..1.2
    hip: float           # hip line (torso bottom), ~0.49..0.56
    head: float          # head height, ~0.11..0.14
    skin: Colour
    hair: Colour
    hair_style: str      # short | long | none
    upper: Colour
    upper2: Colour       # second colour of the pattern
    pattern: str         # see PATTERNS
    period: float        # stripe/check period
    long_sleeves: bool
    coat: bool           # upper garment reaches mid-thigh
    lower: Colour
    lower_type: str      # trousers | shorts | skirt
    shoes: Colour
    bag: Colour | None   # shoulder bag at the hip
    bag_side: int        # -1 left, +1 right (in a front view)
    backpack: Colour | None
    hat: Colour | None


def sample_identity(rng: np.random.Generator, domain: int) -> IdentityStyle:
    """Draw one person's appearance from the domain's distribution."""
    upper_name = _pick(rng, UPPER_WEIGHTS[domain])
    second = _pick(rng, UPPER_WEIGHTS[1 - domain])
    if second == upper_name:
        second = "white" if upper_name != "white" else "black"

    def accessory(prob: float) -> Colour | None:
        return _jitter(rng, UPPER_COLOURS[_pick(rng, UPPER_WEIGHTS[domain])], 0.05) if rng.random() < prob else None

    return IdentityStyle(
        height=float(rng.uniform(0.9, 1.05)),
        build=float(rng.uniform(0.85, 1.2) * (0.93 if domain else 1.0)),
        hip=float(rng.uniform(0.49, 0.56)),
        head=float(rng.uniform(0.11, 0.14)),
        skin=_jitter(rng, SKIN[rng.integers(len(SKIN))], 0.03),
        hair=_jitter(rng, _pick(rng, HAIR, HAIR_WEIGHTS[domain]), 0.03),
        hair_style=_pick(rng, HAIR_STYLES, (55, 35, 10) if domain else (60, 28, 12)),
        upper=_jitter(rng, UPPER_COLOURS[upper_name], 0.05),
        upper2=_jitter(rng, UPPER_COLOURS[second], 0.05),
        pattern=_pick(rng, PATTERNS, PATTERN_WEIGHTS[domain]),
        period=float(rng.uniform(0.035, 0.08)),
        long_sleeves=bool(rng.random() < (0.75 if domain else 0.5)),
        coat=bool(rng.random() < (0.35 if domain else 0.1)),
        lower=_jitter(rng, LOWER_COLOURS[_pick(rng, LOWER_WEIGHTS[domain])], 0.04),
        lower_type=_pick(rng, LOWER_TYPES, LOWER_TYPE_WEIGHTS[domain]),
        shoes=_jitter(rng, (0.1, 0.1, 0.1) if rng.random() < 0.6 else (0.85, 0.85, 0.85), 0.08),
        bag=accessory(0.3),
        bag_side=int(rng.choice((-1, 1))),
        backpack=accessory(0.25),
        hat=accessory(0.12),
    )


@dataclass(frozen=True)
class CameraStyle:
    """What one camera imposes on its images."""

    background: np.ndarray   # (H, 3W, 3) float32 panorama; each image crops a W-wide window
    gain: float              # illumination multiplier
    cast: Colour             # per-channel colour multiplier
    gamma: float
    blur: float              # Gaussian blur radius in pixels
    noise_field: np.ndarray  # (2H, 2W, 3) float32 sensor noise in 0..255 units; each image adds a random H x W window
    jpeg_quality: int
    views: tuple[float, float, float]   # probabilities of front / back / side
    scale: float             # person height as a fraction of the image height
    shift: float             # typical horizontal offset of the person, fraction of the width
    occlusion: float         # probability of a partial occluder


def _panorama(rng: np.random.Generator, domain: int, height: int, width: int) -> np.ndarray:
    """A camera's background: wall and floor colours, a horizon, pillars/doors/windows and floor tiles."""
    palette = BACKGROUND_COLOURS[domain]
    wall, floor = (np.asarray(palette[i]) for i in rng.choice(len(palette), 2, replace=False))
    w = 3 * width
    ys = np.arange(height, dtype=np.float32)[:, None, None] / height
    horizon = rng.uniform(0.45, 0.75)
    shade = 1.0 - 0.25 * np.abs(ys - horizon)
    pano = np.where(ys < horizon, wall, floor) * shade * np.ones((1, w, 1), np.float32)
    tile = int(rng.integers(6, 16))
    rows = (np.arange(height) // tile % 2 == 0) & (np.arange(height) > horizon * height)
    pano[rows] *= rng.uniform(0.85, 0.95)
    for _ in range(int(rng.integers(3, 8))):
        x0 = int(rng.integers(0, w - 4))
        x1 = x0 + int(rng.integers(4, width // 2))
        y0 = int(rng.integers(0, int(horizon * height)))
        y1 = int(rng.integers(y0 + 4, height + 1))
        pano[y0:y1, x0:x1] = _jitter(rng, palette[rng.integers(len(palette))], 0.12)
    pano += rng.normal(0.0, 0.02, pano.shape)
    return np.clip(pano, 0.0, 1.0).astype(np.float32)


def sample_camera(rng: np.random.Generator, domain: int, height: int, width: int) -> CameraStyle:
    """Draw one camera: domain 0 is outdoor-bright and sharp, domain 1 indoor-dark, warm and blurry."""
    cast = np.exp(rng.normal(0.0, 0.1 if domain == 0 else 0.16, 3))
    cast = cast * ((1.0, 1.0, 1.0) if domain == 0 else (1.12, 1.0, 0.85))
    return CameraStyle(
        background=_panorama(rng, domain, height, width),
        gain=float(rng.uniform(0.75, 1.25) if domain == 0 else rng.uniform(0.55, 1.0)),
        cast=tuple(float(c) for c in cast),
        gamma=float(rng.uniform(0.85, 1.2) if domain == 0 else rng.uniform(1.0, 1.4)),
        blur=float(rng.uniform(0.0, 0.9) if domain == 0 else rng.uniform(0.5, 1.5)) * width / 64,
        noise_field=(rng.standard_normal((2 * height, 2 * width, 3), dtype=np.float32)
                     * np.float32(255.0 * (rng.uniform(0.005, 0.03) if domain == 0 else rng.uniform(0.02, 0.05)))),
        jpeg_quality=int(rng.integers(70, 96) if domain == 0 else rng.integers(45, 81)),
        views=tuple(float(p) for p in rng.dirichlet((1.5, 1.5, 1.0))),
        scale=float(rng.uniform(0.8, 0.95) if domain == 0 else rng.uniform(0.7, 0.9)),
        shift=float(rng.normal(0.0, 0.05)),
        occlusion=float(rng.uniform(0.05, 0.3) if domain == 0 else rng.uniform(0.15, 0.4)),
    )
