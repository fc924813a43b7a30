"""Text-to-video: a shot prompt and a seed become a raw take (Zeroscope-shaped: 576x320)."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from webtv_dagster.backends.model_call import ModelCall
from webtv_dagster.backends.space_pool import SpaceBackend
from webtv_dagster.media.conform import conform_video
from webtv_dagster.media.frames import decode_rgb_frames, encode_rgb_frames
from webtv_dagster.media.limits import MediaLimits


class TakeRequest(BaseModel):
    prompt: str
    seed: int = Field(ge=0, lt=2**31)
    frames: int = Field(default=24, ge=2)
    fps: int = 8
    width: int = 576
    height: int = 320
    # The clip's length: a Space that renders at a rate of its own (a pool's `take:`) covers it.
    seconds: float | None = None
    # The picture the take starts from (a PNG: the last frame of the take before it in its
    # scene), for models that condition on an image; None: the take starts from the prompt.
    first_frame: Path | None = None


class TextToVideo(Protocol):
    name: str
    endpoint: str

    def render(self, request: TakeRequest, output: Path) -> ModelCall:
        """Writes the take for `request` to `output` (MP4)."""
        ...


def stable_hash(text: str) -> int:
    """A 32-bit hash of text that, unlike hash(), is the same in every process."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big")


# Lighting words pick the palette: (sky top, sky horizon, ground, accent), RGB 0..1.
PALETTES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "golden hour": ((0.95, 0.62, 0.30), (1.00, 0.85, 0.55), (0.55, 0.38, 0.18), (0.95, 0.30, 0.10)),
    "sunrise": ((0.55, 0.45, 0.75), (1.00, 0.65, 0.55), (0.40, 0.45, 0.30), (1.00, 0.55, 0.20)),
    "moonlight": ((0.02, 0.05, 0.20), (0.15, 0.25, 0.45), (0.08, 0.12, 0.20), (0.80, 0.85, 1.00)),
    "neon": ((0.08, 0.02, 0.18), (0.35, 0.05, 0.45), (0.10, 0.08, 0.20), (0.10, 0.95, 0.90)),
    "candlelight": ((0.10, 0.05, 0.02), (0.45, 0.25, 0.10), (0.25, 0.15, 0.08), (1.00, 0.75, 0.35)),
    "overcast": ((0.55, 0.58, 0.62), (0.78, 0.80, 0.82), (0.35, 0.40, 0.35), (0.85, 0.30, 0.25)),
    "midday": ((0.25, 0.50, 0.95), (0.70, 0.85, 1.00), (0.30, 0.60, 0.25), (1.00, 0.90, 0.20)),
    "misty": ((0.70, 0.75, 0.78), (0.88, 0.90, 0.90), (0.45, 0.52, 0.45), (0.90, 0.55, 0.35)),
}


class CameraPath(BaseModel):
    """Camera motion over the take, t from 0 to 1: pixels of pan/tilt and zoom factors."""

    pan: float = 0.0
    tilt: float = 0.0
    zoom_start: float = 1.0
    zoom_end: float = 1.0
    subject_dx: float = 0.0
    orbit: bool = False


def camera_path_for(prompt: str, width: int) -> CameraPath:
    """Reads the camera and subject movement a prompt asks for."""
    text = prompt.lower()
    travel = 0.35 * width
    path = CameraPath()
    if re.search(r"pans? slowly from left to right|following the subject from left to right", text):
        path.pan = travel
    elif re.search(
        r"pans? slowly from right to left|following the subject from right to left", text
    ):
        path.pan = -travel
    if "tracking shot" in text:
        path.subject_dx = path.pan  # the camera keeps pace with the subject
    if re.search(r"tilts? up|rising|crane", text):
        path.tilt = -0.25 * width
    elif "tilts down" in text or "tilt down" in text:
        path.tilt = 0.25 * width
    if re.search(r"dolly in|zoom in|push(?:es)? in", text):
        path.zoom_end = 1.45
    elif re.search(r"dolly out|zoom out|pull(?:s)? back", text):
        path.zoom_start = 1.45
    if "orbit" in text:
        path.orbit = True
        path.pan = travel
    if "moving steadily to the right" in text:
        path.subject_dx += 0.25 * width
    elif "moving steadily to the left" in text:
        path.subject_dx -= 0.25 * width
    return path


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Value noise in 0..1: a coarse random grid, bilinearly enlarged."""
    grid = rng.random((height // cell + 2, width // cell + 2), dtype=np.float32)
    ys = np.arange(height, dtype=np.float32) / cell
    xs = np.arange(width, dtype=np.float32) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep hides the grid
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _sample(layer: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear lookup of layer (H, W, C) at float coordinates (h, w)."""
    height, width, channels = layer.shape
    xs = np.clip(xs, 0, width - 1.001)
    ys = np.clip(ys, 0, height - 1.001)
    x0, y0 = xs.astype(np.int32), ys.astype(np.int32)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    # One flat take per corner is several times faster than 2-D fancy indexing.
    flat = layer.reshape(-1, channels)
    corner = y0 * width + x0

    top_left, top_right, bottom_left, bottom_right = (
        np.take(flat, corner + offset, axis=0) for offset in (0, 1, width, width + 1)
    )
    top = top_left + (top_right - top_left) * fx
    bottom = bottom_left + (bottom_right - bottom_left) * fx
    return top + (bottom - top) * fy


class ProceduralScene:
    """A painted 2.5D world derived from a prompt and a seed.

    The palette follows the prompt's lighting words, the layout and subject come from the seed
    and the prompt's hash, and the camera moves as the prompt says (pan, tilt, dolly, zoom,
    orbit, tracking). Layers at different depths move with parallax, so motion-compensated
    interpolation downstream has real motion to follow.
    """

    def __init__(self, request: TakeRequest):
        self.request = request
        self.rng = np.random.default_rng([request.seed, stable_hash(request.prompt)])
        self.path = camera_path_for(request.prompt, request.width)
        self.palette = self._palette()
        world_w, world_h = int(request.width * 2.2), int(request.height * 2.2)
        self.world_size = (world_h, world_w)
        self.far = self._far_layer(world_h, world_w)
        self.near = self._near_layer(world_h, world_w)
        self.subject = self._subject()
        self.pixel_y, self.pixel_x = np.mgrid[0 : request.height, 0 : request.width].astype(
            np.float32
        )

    def _palette(self) -> np.ndarray:
        text = self.request.prompt.lower()
        for word, colours in PALETTES.items():
            if word in text:
                base = np.array(colours, dtype=np.float32)
                break
        else:
            hue = self.rng.random()
            base = np.array(
                [
                    _hsv(hue, 0.5, 0.9),
                    _hsv(hue + 0.05, 0.3, 1.0),
                    _hsv(hue + 0.3, 0.5, 0.5),
                    _hsv(hue + 0.5, 0.8, 0.9),
                ],
                dtype=np.float32,
            )
        # Each prompt shifts the palette a little, so prompts with the same light still differ.
        jitter = self.rng.normal(0, 0.06, size=base.shape).astype(np.float32)
        return np.clip(base + jitter, 0, 1)

    def _far_layer(self, height: int, width: int) -> np.ndarray:
        sky_top, horizon, ground, _ = self.palette
        rows = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        sky = sky_top * (1 - rows) + horizon * rows
        clouds = _smooth_noise(self.rng, height, width, 48)[..., None]
        layer = sky * (0.85 + 0.3 * clouds)
        xs = np.arange(width, dtype=np.float32)
        # Two ranges of hills, each a sum of sines with seeded wavelengths.
        for depth, shade in ((0.45, 0.75), (0.58, 0.55)):
            amplitudes = self.rng.uniform(8, 30, size=3)
            wavelengths = self.rng.uniform(40, 160, size=3)
            phases = self.rng.uniform(0, 6, size=3)
            waves = amplitudes[:, None] * np.sin(xs / wavelengths[:, None] + phases[:, None])
            ridge = depth * height + waves.sum(axis=0)
            below = np.arange(height, dtype=np.float32)[:, None] > ridge[None, :]
            hill = ground * shade + horizon * (1 - shade) * 0.5
            layer = np.where(below[..., None], hill, layer)
        sun_y, sun_x = self.rng.uniform(0.1, 0.3) * height, self.rng.uniform(0.2, 0.8) * width
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        glow = np.exp(-((yy - sun_y) ** 2 + (xx - sun_x) ** 2) / (2 * (0.05 * width) ** 2))
        return np.clip(layer + glow[..., None] * self.palette[3] * 0.8, 0, 1)

    def _near_layer(self, height: int, width: int) -> np.ndarray:
        """Ground and props with an alpha channel (RGBA)."""
        _, horizon, ground, accent = self.palette
        layer = np.zeros((height, width, 4), dtype=np.float32)
        ground_top = int(0.66 * height)
        texture = _smooth_noise(self.rng, height - ground_top, width, 12)[..., None]
        rows = np.linspace(0.8, 1.1, height - ground_top, dtype=np.float32)[:, None, None]
        layer[ground_top:, :, :3] = ground * rows * (0.75 + 0.5 * texture)
        layer[ground_top:, :, 3] = 1
        for _ in range(int(self.rng.integers(6, 12))):  # buildings, trees, crates...
            w = int(self.rng.uniform(0.03, 0.09) * width)
            h = int(self.rng.uniform(0.10, 0.30) * height)
            x = int(self.rng.uniform(0, width - w))
            colour = np.clip(ground * 0.6 + accent * self.rng.uniform(0.1, 0.5), 0, 1)
            top = ground_top - h + int(0.02 * height)
            stripes = 0.85 + 0.15 * (np.arange(h)[:, None] // 6 % 2)
            layer[top : top + h, x : x + w, :3] = colour * stripes[..., None]
            layer[top : top + h, x : x + w, 3] = 1
        return layer

    def _subject(self) -> dict[str, float]:
        r = self.request
        return {
            "x": self.rng.uniform(0.35, 0.65) * r.width,
            "y": 0.62 * r.height,
            "size": self.rng.uniform(0.12, 0.2) * r.height,
            "bob": self.rng.uniform(1.5, 4.0),
        }

    def frame(self, t: float) -> np.ndarray:
        r, path = self.request, self.path
        world_h, world_w = self.world_size
        zoom = path.zoom_start + (path.zoom_end - path.zoom_start) * t
        cx = world_w / 2 + path.pan * (t - 0.5)
        cy = world_h / 2 + path.tilt * (t - 0.5)
        grid_x = (self.pixel_x - r.width / 2) / zoom
        grid_y = (self.pixel_y - r.height / 2) / zoom
        # Parallax: far things move half as much as near ones; an orbit moves them opposite.
        far_shift = -0.5 if path.orbit else 0.5
        far = _sample(self.far, grid_x + world_w / 2 + (cx - world_w / 2) * far_shift, grid_y + cy)
        near = _sample(self.near, grid_x + cx, grid_y + cy)
        image = far * (1 - near[..., 3:]) + near[..., :3] * near[..., 3:]
        self._draw_subject(image, t, zoom, cx - world_w / 2, cy - world_h / 2)
        return image

    def _draw_subject(self, image: np.ndarray, t: float, zoom: float, cam_x: float, cam_y: float):
        r, s = self.request, self.subject
        x = s["x"] + self.path.subject_dx * (t - 0.5) - cam_x
        bob = np.sin(t * np.pi * 2 * s["bob"]) * s["size"] * 0.08
        y = s["y"] - cam_y + bob
        x = r.width / 2 + (x - r.width / 2) * zoom
        y = r.height / 2 + (y - r.height / 2) * zoom
        size = s["size"] * zoom
        yy, xx = self.pixel_y, self.pixel_x
        body = ((xx - x) / (0.75 * size)) ** 2 + ((yy - y) / size) ** 2 < 1
        head_x, head_y = x + 0.35 * size, y - 1.1 * size
        head = ((xx - head_x) / (0.4 * size)) ** 2 + ((yy - head_y) / (0.5 * size)) ** 2 < 1
        scarf = body & (np.abs(yy - (y - 0.75 * size)) < 0.12 * size)
        shade = 0.8 + 0.2 * ((xx - x) / size)
        skin = np.clip(self.palette[1] * 0.3 + 0.7, 0, 1)
        image[body | head] = (skin * np.clip(shade, 0.6, 1.1)[..., None])[body | head]
        image[scarf] = self.palette[3]


def _hsv(hue: float, saturation: float, value: float) -> tuple[float, float, float]:
    import colorsys

    return colorsys.hsv_to_rgb(hue % 1.0, saturation, value)


class ProceduralTextToVideo:
    """Offline text-to-video: renders a procedural scene that follows the prompt, no model."""

    name = "procedural"
    endpoint = "offline"

    # A take that starts from a picture dissolves from it into its own scene over this long.
    DISSOLVE_SECONDS = 1.0

    def render(self, request: TakeRequest, output: Path) -> ModelCall:
        scene = ProceduralScene(request)
        grain_rng = np.random.default_rng(request.seed)
        start = None
        if request.first_frame is not None:
            picture = decode_rgb_frames(request.first_frame, request.width, request.height)[0]
            start = picture.astype(np.float32) / 255
        frames = np.empty((request.frames, request.height, request.width, 3), dtype=np.uint8)
        for index in range(request.frames):
            image = scene.frame(index / max(1, request.frames - 1))
            if start is not None:
                # Smoothstep from the picture (weight 1 on the first frame) to the scene.
                left = max(0.0, 1 - index / request.fps / self.DISSOLVE_SECONDS)
                weight = left * left * (3 - 2 * left)
                image = weight * start + (1 - weight) * image
            grain = grain_rng.normal(0, 0.012, size=image.shape[:2])[..., None]
            if start is not None and index == 0:
                grain = 0.0  # the first frame is the picture itself
            frames[index] = np.clip((image + grain) * 255, 0, 255).astype(np.uint8)
        encode_rgb_frames(frames, request.fps, output, f"encoding the take of {request.prompt!r}")
        details = {"image_conditioned": True} if start is not None else {}
        return ModelCall(backend=self.name, endpoint=self.endpoint, details=details)


class SpaceTextToVideo(SpaceBackend):
    """Text-to-video on a pool of Zeroscope-style Gradio Spaces (`/run`: prompt, seed,
    frames, steps by default)."""

    def render(self, request: TakeRequest, output: Path) -> ModelCall:
        frames, fps, width, height = request.frames, request.fps, request.width, request.height
        shape = self.pool.config.take
        if shape is not None:
            # The whole clip at the Space's rate and size, and the frame it starts from.
            fps, width, height = shape.fps, shape.width, shape.height
            frames = math.ceil((request.seconds or request.frames / request.fps) * fps) + 1
        values = {
            "prompt": request.prompt,
            "seed": request.seed,
            "frames": frames,
            "fps": fps,
            "width": width,
            "height": height,
            "image": request.first_frame,  # an upload; a call without {image} ignores it
        }
        return self.pool.fetch(
            values,
            MediaLimits.around("video", frames / fps),
            lambda answer: conform_video(answer, output, width=width, height=height),
        )
