"""Local Gradio Spaces with the same API as the Spaces the original AI WebTV called: look-alikes
served by the offline backends, so the whole remote path runs with no GPU and no network
(apps.py), and today's open models on the operator's own GPU (generators.py, model_apps.py)."""
