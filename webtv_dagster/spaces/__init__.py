"""Local Gradio Spaces with the same API as the Spaces the original AI WebTV called, served by
the offline backends, so the whole remote path runs with no GPU and no network."""
