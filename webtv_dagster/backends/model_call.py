"""What a backend reports about the call that made an object."""

from __future__ import annotations

from pydantic import BaseModel


class ModelCall(BaseModel):
    backend: str
    endpoint: str  # "offline", or the Space / API that answered
    attempts: int = 1
    # What the model's server said of the call (spaces/model_apps.py: device, dtype, steps,
    # seconds), checked against ANSWER_DETAILS.
    details: dict[str, str | int | float | bool] = {}
