"""Music generators: a shot and the channel's mood become a stereo score as long as the clip."""

from __future__ import annotations

import math
import wave
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from webtv_dagster.backends.model_call import ModelCall
from webtv_dagster.backends.space_pool import SpaceBackend
from webtv_dagster.backends.text_to_video import stable_hash
from webtv_dagster.media.conform import conform_audio
from webtv_dagster.media.ffmpeg import run_ffmpeg
from webtv_dagster.media.limits import MediaLimits


class MusicRequest(BaseModel):
    prompt: str = Field(description="What the music is for: the shot and the channel's mood.")
    mood: str
    seed: int = Field(ge=0, lt=2**31)
    seconds: float = Field(gt=0)
    sample_rate: int = 48_000


class MusicGenerator(Protocol):
    name: str
    endpoint: str

    def compose(self, request: MusicRequest, output: Path) -> ModelCall:
        """Writes the track (FLAC, stereo) to `output`."""
        ...


def music_prompt(shot_prompt: str, mood: str) -> str:
    """The text a music model gets: the mood first, then the scene it scores."""
    return f"{mood} instrumental soundtrack for: {shot_prompt}"


class MoodStyle(BaseModel):
    tempo: tuple[int, int]
    minor: bool
    drums: bool
    brightness: float  # 0 soft .. 1 bright melody timbre


MOODS: dict[str, MoodStyle] = {
    "playful": MoodStyle(tempo=(108, 128), minor=False, drums=True, brightness=0.8),
    "uplifting": MoodStyle(tempo=(100, 120), minor=False, drums=True, brightness=0.7),
    "happy": MoodStyle(tempo=(110, 130), minor=False, drums=True, brightness=0.8),
    "calm": MoodStyle(tempo=(68, 84), minor=False, drums=False, brightness=0.3),
    "dreamy": MoodStyle(tempo=(64, 80), minor=False, drums=False, brightness=0.4),
    "epic": MoodStyle(tempo=(86, 100), minor=True, drums=True, brightness=0.6),
    "mysterious": MoodStyle(tempo=(70, 86), minor=True, drums=False, brightness=0.4),
    "tense": MoodStyle(tempo=(96, 116), minor=True, drums=True, brightness=0.5),
    "melancholic": MoodStyle(tempo=(60, 76), minor=True, drums=False, brightness=0.3),
}
MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
# Chord roots as scale degrees (0-based): I-V-vi-IV, I-vi-IV-V, i-VI-III-VII, i-iv-VII-III...
PROGRESSIONS_MAJOR = [[0, 4, 5, 3], [0, 5, 3, 4], [0, 3, 0, 4], [5, 3, 0, 4]]
PROGRESSIONS_MINOR = [[0, 5, 2, 6], [0, 3, 6, 2], [0, 5, 3, 4], [0, 6, 5, 6]]


def mood_style(mood: str, rng: np.random.Generator) -> MoodStyle:
    words = mood.lower().split()
    for word in words:
        if word in MOODS:
            return MOODS[word]
    # An unknown mood still gets a consistent character, drawn from its own name.
    return list(MOODS.values())[stable_hash(mood.lower()) % len(MOODS)]


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


class ProceduralMusicGenerator:
    """Offline composer: key, tempo, chords, bass, melody and drums from the mood and the seed.

    Pad chords, a bass line on the chord roots, a scale melody with a seeded rhythm and, for
    lively moods, kick/snare/hat patterns, mixed in stereo and peak-normalized.
    """

    name = "procedural"
    endpoint = "offline"

    def compose(self, request: MusicRequest, output: Path) -> ModelCall:
        audio = self.render(request)
        wav = output.with_suffix(".wav")
        with wave.open(str(wav), "wb") as handle:
            handle.setnchannels(2)
            handle.setsampwidth(2)
            handle.setframerate(request.sample_rate)
            handle.writeframes((audio * 32767).astype("<i2").tobytes())
        try:
            run_ffmpeg(["-i", str(wav), "-c:a", "flac", str(output)], "encoding the music as FLAC")
        finally:
            wav.unlink(missing_ok=True)
        return ModelCall(backend=self.name, endpoint=self.endpoint)

    def render(self, request: MusicRequest) -> np.ndarray:
        """The track as float samples in -1..1, shape (samples, 2)."""
        rng = np.random.default_rng([request.seed, stable_hash(request.prompt)])
        style = mood_style(request.mood, rng)
        rate = request.sample_rate
        total = round(request.seconds * rate)
        mix = np.zeros((total, 2), dtype=np.float64)
        tempo = rng.integers(style.tempo[0], style.tempo[1] + 1)
        beat = 60.0 / tempo
        root = 48 + int(rng.integers(0, 12))
        scale = MINOR if style.minor else MAJOR
        progressions = PROGRESSIONS_MINOR if style.minor else PROGRESSIONS_MAJOR
        progression = progressions[int(rng.integers(len(progressions)))]
        bar = 4 * beat
        bars = int(np.ceil(request.seconds / bar))

        def degree(step: int) -> int:
            return root + 12 * (step // 7) + scale[step % 7]

        for index in range(bars):
            start = index * bar
            chord_root = progression[index % len(progression)]
            chord = [degree(chord_root), degree(chord_root + 2), degree(chord_root + 4)]
            for voice, note in enumerate(chord):
                pan = (voice - 1) * 0.4
                self._note(mix, rate, start, bar, _hz(note + 12), 0.10, "pad", pan, rng)
            for quarter in range(4):  # bass on the root, every beat
                self._note(
                    mix,
                    rate,
                    start + quarter * beat,
                    beat * 0.9,
                    _hz(chord[0] - 12),
                    0.22,
                    "bass",
                    0.0,
                    rng,
                )
            self._melody(mix, rate, start, beat, chord_root, degree, style, rng)
            if style.drums:
                self._drums(mix, rate, start, beat, rng)
        # Short fades keep clip boundaries free of clicks.
        fade = int(0.02 * rate)
        ramp = np.linspace(0, 1, fade)[:, None]
        mix[:fade] *= ramp
        mix[-fade:] *= ramp[::-1]
        peak = np.max(np.abs(mix)) or 1.0
        return (mix / peak * 0.7).astype(np.float32)

    def _melody(self, mix, rate, start, beat, chord_root, degree, style, rng):
        step = chord_root + 7
        position = 0.0
        while position < 4 * beat - 1e-9:
            length = beat * float(rng.choice([0.5, 0.5, 1.0, 1.5]))
            if rng.random() > 0.15:  # rests give the line room to breathe
                step += int(rng.choice([-2, -1, -1, 0, 1, 1, 2]))
                step = int(np.clip(step, chord_root + 3, chord_root + 14))
                brightness = 0.18 + 0.12 * style.brightness
                self._note(
                    mix,
                    rate,
                    start + position,
                    length,
                    _hz(degree(step) + 12),
                    brightness,
                    "pluck",
                    float(rng.uniform(-0.3, 0.3)),
                    rng,
                )
            position += length

    def _drums(self, mix, rate, start, beat, rng):
        for quarter in range(4):
            at = start + quarter * beat
            kind = "kick" if quarter % 2 == 0 else "snare"
            self._note(mix, rate, at, 0.25, 0.0, 0.5 if kind == "kick" else 0.25, kind, 0.0, rng)
            self._note(mix, rate, at + beat / 2, 0.05, 0.0, 0.06, "hat", 0.2, rng)

    @staticmethod
    def _note(mix, rate, start, length, hz, level, timbre, pan, rng):
        begin = int(start * rate)
        if begin >= len(mix):
            return
        count = min(int(length * rate), len(mix) - begin)
        t = np.arange(count) / rate
        if timbre == "pad":
            wave_ = sum(np.sin(2 * np.pi * hz * k * t) / k for k in (1, 2, 3))
            envelope = np.minimum(1, t / 0.3) * np.minimum(1, (length - t) / 0.3)
        elif timbre == "bass":
            wave_ = np.sin(2 * np.pi * hz * t) + 0.3 * np.sin(4 * np.pi * hz * t)
            envelope = np.exp(-t * 3) * np.minimum(1, t / 0.01)
        elif timbre == "pluck":
            wave_ = np.sin(2 * np.pi * hz * t) + 0.4 * np.sin(4 * np.pi * hz * t)
            envelope = np.exp(-t * 5) * np.minimum(1, t / 0.005)
        elif timbre == "kick":
            wave_ = np.sin(2 * np.pi * (50 * t + 60 * (1 - np.exp(-t * 30)) / 30))
            envelope = np.exp(-t * 12)
        else:  # snare and hat: noise bursts, the hat shorter and brighter
            noise = rng.standard_normal(count)
            wave_ = np.diff(noise, prepend=0.0) if timbre == "hat" else noise
            envelope = np.exp(-t * (60 if timbre == "hat" else 18))
        signal = wave_ * envelope * level
        mix[begin : begin + count, 0] += signal * (1 - pan) / 2 * 2**0.5
        mix[begin : begin + count, 1] += signal * (1 + pan) / 2 * 2**0.5


class SpaceMusicGenerator(SpaceBackend):
    """Music on a pool of MusicGen-style Gradio Spaces (text, duration by default)."""

    def compose(self, request: MusicRequest, output: Path) -> ModelCall:
        values = {
            "prompt": request.prompt,
            "mood": request.mood,
            "seed": request.seed,
            "seconds": math.ceil(request.seconds),
        }
        return self.pool.fetch(
            values,
            MediaLimits.around("audio", request.seconds),
            lambda answer: conform_audio(
                answer, output, seconds=request.seconds, sample_rate=request.sample_rate
            ),
        )
