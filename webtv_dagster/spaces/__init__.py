"""Local Gradio Spaces with the same API as the Spaces the original AI WebTV called: look-alikes
served by the offline backends, so the whole remote path runs with no GPU and no network
(apps.py), and today's open models on the operator's own GPU (generators.py, model_apps.py)."""

from importlib.util import find_spec

# gradio serves every Space of this folder; production installs that only call Spaces lack it.
SPACES_EXTRA = "pip install 'webtv-dagster[spaces]'"


def gradio_installed() -> bool:
    return find_spec("gradio") is not None
