"""Drawn talking faces for the synthetic CREMA-D videos (the design is in emolib.data.synth.corpus).

A head is a soft-edged sprite (hair, shaded skin oval, eye sockets, eyes, eyebrows,
nose with a light bridge and dark nostrils, lips) over a static layer (background,
shoulders, neck). Each clip renders the head once per mouth opening in MOUTH_STEPS,
then every frame picks the opening that follows the speech envelope, moves the head
a few pixels and adds pixel noise.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from ...errors import VideoError

FRAME_WIDTH = 480
FRAME_HEIGHT = 360
FPS = 30
MP4V_TAG = cv2.VideoWriter_fourcc(*"mp4v")  # MPEG-4 part 2 in .mp4
FLV_TAG = 2  # FLV's own tag for Sorenson H.263 (FLV1); cv2 picks the same codec for fourcc 'FLV1' but warns per file
MOUTH_STEPS = 6
EXPRESSION_STEPS = 5  # temporal mode: the expression's strength in a frame, quantised (0 = resting face, 1 = apex)
TALK_OPENING = 0.35
HEAD_WANDER_PX = 3.0
PIXEL_NOISE = 3  # uniform in [-3, 3] grey levels
NOISE_MARGIN = 16
SPRITE_BLUR = 0.8
SHIFT = 4  # fractional bits of cv2 drawing coordinates
ONE = 1 << SHIFT

SKIN_TONES = {
    "Caucasian": ((150, 180, 225), (120, 160, 215), (140, 175, 235)),
    "African American": ((75, 105, 150), (60, 90, 135), (95, 125, 175)),
    "Asian": ((135, 175, 220), (115, 160, 210), (125, 170, 225)),
    "Unknown": ((110, 145, 195), (125, 160, 205), (100, 140, 190)),
}
HAIR_COLOURS = ((25, 25, 30), (30, 45, 70), (40, 60, 95), (20, 20, 20), (70, 100, 140), (110, 110, 115))
BACKGROUNDS = ((200, 200, 195), (170, 180, 165), (215, 205, 185), (150, 160, 175), (185, 195, 210), (120, 130, 125))
SHIRTS = ((140, 60, 40), (40, 40, 40), (60, 110, 60), (170, 170, 170), (50, 50, 140), (120, 80, 100))


@dataclass(frozen=True)
class FaceLook:
    """What an actor's face looks like; lengths in pixels, colours BGR."""

    center: tuple[float, float]
    half_height: float
    aspect: float
    hairline: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    background: tuple[int, int, int]
    shirt: tuple[int, int, int]
    light: float
    brow_thickness: float


@dataclass(frozen=True)
class Expression:
    """A facial expression: brow height and knit, eye and mouth opening, mouth corners (+ up) and width.

    Brows and mouth corners are 0 when relaxed; eye opening and mouth width are 1 when typical.
    """

    brow_raise: float = 0.0
    brow_tilt: float = 0.0
    eye_open: float = 1.0
    mouth_open: float = 0.1
    mouth_curve: float = 0.0
    mouth_width: float = 1.0


def random_face_look(rng: np.random.Generator, sex: str, race: str) -> FaceLook:
    """Draw an actor's face shape, colours and place in the frame."""
    half_height = rng.uniform(76, 92)
    palette = SKIN_TONES.get(race, SKIN_TONES["Unknown"])
    skin = np.array(palette[rng.integers(len(palette))]) + rng.normal(0, 6, 3)
    return FaceLook(
        center=(FRAME_WIDTH / 2 + rng.uniform(-35, 35), FRAME_HEIGHT * 0.45 + rng.uniform(-12, 12)),
        half_height=half_height,
        aspect=rng.uniform(0.72, 0.80) + (0.03 if sex == "Male" else 0.0),
        hairline=rng.uniform(0.55, 0.72) if sex == "Male" else rng.uniform(0.62, 0.78),
        skin=_colour(skin),
        hair=_darker_hair(rng, skin),
        background=_colour(np.array(BACKGROUNDS[rng.integers(len(BACKGROUNDS))]) + rng.normal(0, 8, 3)),
        shirt=SHIRTS[rng.integers(len(SHIRTS))],
        light=rng.uniform(-0.12, 0.12),
        brow_thickness=rng.uniform(0.07, 0.10) if sex == "Male" else rng.uniform(0.05, 0.075),
    )


def render_frames(look: FaceLook, expression: Expression, talk: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """One BGR frame per value of ``talk`` (speech envelope in [0, 1] at the video frame rate)."""
    return [frame.copy() for frame in iter_frames(look, expression, talk, rng)]


def iter_frames(look: FaceLook, expression: Expression, talk: np.ndarray, rng: np.random.Generator, strength: np.ndarray | None = None,
                resting: Expression | None = None):
    """Like render_frames, but yield one reused buffer: each frame is valid until the next one.

    Temporal mode: ``strength`` (one value in [0, 1] per frame) moves each frame's expression from ``resting`` (0)
    to ``expression`` (1), quantised to EXPRESSION_STEPS; without it every frame shows ``expression``."""
    static = render_static_layer(look)
    sprites = {}

    def sprite_for(level: int, mouth: int):
        if level not in sprites:
            shown = expression if strength is None else _towards(resting or expression, expression, level / (EXPRESSION_STEPS - 1))
            face = render_head(look, shown, mouth=False)
            sprites[level] = [_finish(face, look, _with_talk(shown, step / (MOUTH_STEPS - 1))) for step in range(MOUTH_STEPS)]
        return sprites[level][mouth]

    alpha = head_alpha(look)
    beta = 1.0 - alpha
    offsets = _head_wander(len(talk), rng)
    noise = rng.integers(0, 2 * PIXEL_NOISE + 1, (FRAME_HEIGHT + NOISE_MARGIN, FRAME_WIDTH + NOISE_MARGIN, 3), dtype=np.uint8)
    shifts = rng.integers(0, NOISE_MARGIN + 1, (len(talk), 2))
    x0, y0, width, height = head_box(look)
    frame = np.empty_like(static)
    for index, level in enumerate(talk):
        shown = EXPRESSION_STEPS - 1 if strength is None else int(round(float(np.clip(strength[index], 0, 1)) * (EXPRESSION_STEPS - 1)))
        sprite = sprite_for(shown, int(round(float(np.clip(level, 0, 1)) * (MOUTH_STEPS - 1))))
        np.copyto(frame, static)
        left, top = x0 + offsets[index][0], y0 + offsets[index][1]
        region = frame[top : top + height, left : left + width]
        region[:] = cv2.blendLinear(sprite, region, alpha, beta)
        dy, dx = shifts[index]
        cv2.add(frame, noise[dy : dy + FRAME_HEIGHT, dx : dx + FRAME_WIDTH], dst=frame)
        cv2.subtract(frame, (PIXEL_NOISE,) * 3, dst=frame)
        yield frame


def write_flv(path, frames, fourcc: int = FLV_TAG) -> None:
    """Write BGR frames (any iterable) as an FLV1 (Sorenson H.263) .flv file at FPS (or another ``fourcc``, e.g. MP4V_TAG)."""
    writer = cv2.VideoWriter(str(path), fourcc, FPS, (FRAME_WIDTH, FRAME_HEIGHT))
    if not writer.isOpened():
        raise VideoError(f"{path}: OpenCV cannot write this video (is its FFmpeg backend missing?)")
    for frame in frames:
        writer.write(frame)
    writer.release()


def render_static_layer(look: FaceLook) -> np.ndarray:
    """Background with a soft gradient, shoulders and neck."""
    shade = np.array([[1.01, 1.11], [0.89, 0.99]], np.float32)[..., None]
    corners = np.clip(shade * np.array(look.background, np.float32), 0, 255).astype(np.uint8)
    frame = cv2.resize(corners, (FRAME_WIDTH, FRAME_HEIGHT), interpolation=cv2.INTER_LINEAR)
    cx, cy = look.center
    b = look.half_height
    a = b * look.aspect
    neck_skin = _colour(np.array(look.skin) * 0.82)
    cv2.rectangle(frame, _pt(cx - 0.42 * a, cy + 0.5 * b), _pt(cx + 0.42 * a, cy + 1.45 * b), neck_skin, -1, cv2.LINE_AA, SHIFT)
    cv2.ellipse(frame, _pt(cx, cy + 2.35 * b), _pt(2.1 * a, 1.05 * b), 0, 0, 360, look.shirt, -1, cv2.LINE_AA, SHIFT)
    cv2.ellipse(frame, _pt(cx, cy + 1.25 * b), _pt(0.42 * a, 0.22 * b), 0, 0, 180, neck_skin, -1, cv2.LINE_AA, SHIFT)
    return cv2.GaussianBlur(frame, (0, 0), 1.0)


def head_box(look: FaceLook) -> tuple[int, int, int, int]:
    """Sprite rectangle (x0, y0, width, height) of the head at rest, in frame pixels."""
    cx, cy = look.center
    b = look.half_height
    a = b * look.aspect
    x0, y0 = int(cx - 1.3 * a), int(cy - 1.3 * b)
    return x0, y0, int(2.6 * a) + 1, int(2.45 * b) + 1


def head_alpha(look: FaceLook) -> np.ndarray:
    """Soft head silhouette (hair, face, ears) over the sprite rectangle, float32 in [0, 1]."""
    mask = np.zeros(head_box(look)[:1:-1], np.uint8)
    _draw_silhouette(mask, look, 255, 255, 255)
    return cv2.GaussianBlur(mask, (0, 0), 1.2).astype(np.float32) / 255.0


def render_head(look: FaceLook, expression: Expression, mouth: bool = True) -> np.ndarray:
    """The head sprite (BGR uint8, the size of head_box) with this expression."""
    x0, y0, width, height = head_box(look)
    cx, cy = look.center[0] - x0, look.center[1] - y0
    b = look.half_height
    a = b * look.aspect
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = (xs - cx) / a, (ys - cy) / b
    sprite = np.zeros((height, width, 3), np.uint8)
    _draw_silhouette(sprite, look, look.skin, _colour(np.array(look.skin) * 0.85), look.hair)
    sprite = np.clip(sprite.astype(np.float32) * _skin_shading(u, v, look)[..., None], 0, 255).astype(np.uint8)
    forehead = (v < -look.hairline + 0.3 * u**2) & ((u / 1.07) ** 2 + ((v + 0.22) / 0.92) ** 2 < 1)
    sprite[forehead] = look.hair
    _draw_eyes(sprite, cx, cy, a, b, expression)
    _draw_brows(sprite, cx, cy, a, b, look, expression)
    _draw_nostrils(sprite, cx, cy, a, b, look)
    return _finish(sprite, look, expression) if mouth else sprite


def _finish(face, look, expression):
    x0, y0, _, _ = head_box(look)
    b = look.half_height
    sprite = face.copy()
    _draw_mouth(sprite, look.center[0] - x0, look.center[1] - y0, b * look.aspect, b, look, expression)
    return cv2.GaussianBlur(sprite, (0, 0), SPRITE_BLUR)


def _draw_silhouette(image, look, skin, ear, hair):
    x0, y0, _, _ = head_box(look)
    cx, cy = look.center[0] - x0, look.center[1] - y0
    b = look.half_height
    a = b * look.aspect
    cv2.ellipse(image, _pt(cx, cy - 0.22 * b), _pt(1.07 * a, 0.92 * b), 0, 0, 360, hair, -1, cv2.LINE_AA, SHIFT)
    for side in (-1, 1):
        cv2.ellipse(image, _pt(cx + side * 0.97 * a, cy + 0.02 * b), _pt(0.14 * a, 0.2 * b), 0, 0, 360, ear, -1, cv2.LINE_AA, SHIFT)
    cv2.ellipse(image, _pt(cx, cy), _pt(a, b), 0, 0, 360, skin, -1, cv2.LINE_AA, SHIFT)


def _skin_shading(u, v, look):
    radius = u**2 + (v + 0.1) ** 2
    shade = 1.0 - 0.28 * np.clip(radius, 0, 1.2) ** 2 + look.light * u
    eye_y = -0.1
    for side in (-1, 1):
        shade -= 0.30 * _blob(u - side * 0.4, v - eye_y + 0.02, 0.26, 0.13)
        shade += 0.06 * _blob(u - side * 0.45, v - 0.22, 0.2, 0.12)
    shade += 0.10 * _blob(u, v - 0.08, 0.07, 0.22)
    shade -= 0.10 * _blob(u - 0.13, v - 0.12, 0.04, 0.14) + 0.10 * _blob(u + 0.13, v - 0.12, 0.04, 0.14)
    shade -= 0.18 * _blob(u, v - 0.36, 0.14, 0.04)
    shade -= 0.12 * _blob(u, v - 0.74, 0.22, 0.06)
    return shade.astype(np.float32)


def _draw_eyes(sprite, cx, cy, a, b, expression):
    eye_y = cy - 0.1 * b
    half_width = 0.17 * a
    half_height = max(0.02, 0.085 * a * expression.eye_open)
    for side in (-1, 1):
        ex = cx + side * 0.4 * a
        mask = np.zeros(sprite.shape[:2], np.uint8)
        cv2.ellipse(mask, _pt(ex, eye_y), _pt(half_width, half_height), 0, 0, 360, 255, -1, cv2.LINE_AA, SHIFT)
        eye = np.full_like(sprite, (215, 220, 225))
        cv2.circle(eye, _pt(ex, eye_y), int(0.085 * a * ONE), (40, 50, 70), -1, cv2.LINE_AA, SHIFT)
        cv2.circle(eye, _pt(ex, eye_y), int(0.04 * a * ONE), (15, 15, 15), -1, cv2.LINE_AA, SHIFT)
        weight = mask.astype(np.float32)[..., None] / 255.0
        sprite[:] = (sprite * (1 - weight) + eye * weight).astype(np.uint8)
        lid = max(2, int(round(0.035 * a)))
        cv2.ellipse(sprite, _pt(ex, eye_y), _pt(half_width, half_height), 0, 180, 360, (30, 30, 35), lid, cv2.LINE_AA, SHIFT)
        cv2.ellipse(sprite, _pt(ex, eye_y), _pt(half_width, half_height), 0, 20, 160, (70, 70, 80), 1, cv2.LINE_AA, SHIFT)


def _draw_brows(sprite, cx, cy, a, b, look, expression):
    base = cy - 0.1 * b - 0.2 * b - 0.08 * b * expression.brow_raise
    colour = _colour(np.minimum(np.array(look.hair) * 0.8, np.array(look.skin) * 0.45))
    thickness = max(3, int(round(look.brow_thickness * a)))
    for side in (-1, 1):
        points = [
            (cx + side * 0.14 * a, base + 0.07 * b * expression.brow_tilt + 0.02 * b),
            (cx + side * 0.38 * a, base - 0.02 * b),
            (cx + side * 0.62 * a, base - 0.05 * b * expression.brow_tilt + 0.03 * b),
        ]
        cv2.polylines(sprite, [np.array([_pt(*p) for p in points], np.int32)], False, colour, thickness, cv2.LINE_AA, SHIFT)


def _draw_nostrils(sprite, cx, cy, a, b, look):
    colour = _colour(np.array(look.skin) * 0.45)
    for side in (-1, 1):
        cv2.ellipse(sprite, _pt(cx + side * 0.09 * a, cy + 0.33 * b), _pt(0.055 * a, 0.03 * b), side * 20, 0, 360, colour, -1, cv2.LINE_AA, SHIFT)


def _draw_mouth(sprite, cx, cy, a, b, look, expression):
    t = np.linspace(-1, 1, 21)
    x = cx + t * 0.34 * a * expression.mouth_width
    middle = cy + 0.6 * b - expression.mouth_curve * 0.09 * b * (t**2 - 0.3)
    gap = np.clip(expression.mouth_open, 0, None) * 0.1 * b * (1 - t**2)
    upper = middle - gap - 0.035 * b * (1 - 0.7 * t**2)
    lower = middle + gap + 0.05 * b * (1 - 0.7 * t**2)
    lips = _colour(np.array(look.skin) * np.array([0.55, 0.55, 0.85]))
    outline = np.concatenate([np.stack([x, upper], 1), np.stack([x, lower], 1)[::-1]])
    cv2.fillPoly(sprite, [(outline * ONE).astype(np.int32)], lips, cv2.LINE_AA, SHIFT)
    inner = np.concatenate([np.stack([x, middle - gap], 1), np.stack([x, middle + gap], 1)[::-1]])
    cv2.fillPoly(sprite, [(inner * ONE).astype(np.int32)], (35, 25, 45), cv2.LINE_AA, SHIFT)
    if expression.mouth_open > 0.4:
        teeth = np.concatenate([np.stack([x, middle - gap], 1), np.stack([x, middle - gap * 0.4], 1)[::-1]])
        cv2.fillPoly(sprite, [(teeth[2:-2] * ONE).astype(np.int32)], (200, 205, 210), cv2.LINE_AA, SHIFT)


def _towards(start: Expression, end: Expression, amount: float) -> Expression:
    """The expression ``amount`` of the way from ``start`` to ``end``."""
    return Expression(**{name: (1 - amount) * getattr(start, name) + amount * getattr(end, name) for name in Expression.__dataclass_fields__})


def _with_talk(expression: Expression, level: float) -> Expression:
    return replace(expression, mouth_open=expression.mouth_open + TALK_OPENING * level)


def _head_wander(frames: int, rng: np.random.Generator) -> np.ndarray:
    steps = rng.normal(0, 0.6, (frames, 2)).cumsum(0)
    steps -= steps.mean(0)
    limit = np.abs(steps).max() or 1.0
    return np.round(steps * min(1.0, HEAD_WANDER_PX / limit)).astype(int)


def _darker_hair(rng, skin):
    brightness = np.array(HAIR_COLOURS).mean(1)
    allowed = np.flatnonzero(brightness < np.mean(skin) * 0.75)
    return HAIR_COLOURS[rng.choice(allowed) if len(allowed) else int(brightness.argmin())]


def _blob(du, dv, su, sv):
    return np.exp(-0.5 * ((du / su) ** 2 + (dv / sv) ** 2))


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * ONE)), int(round(y * ONE))


def _colour(values) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.clip(np.round(values), 0, 255))
