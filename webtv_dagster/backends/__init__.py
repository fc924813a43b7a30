"""Model backends: one small interface per model family (prompt writer, text-to-video,
upscaler, interpolator, music, moderator) with its implementations side by side, the offline
one and the remote one (an OpenAI-compatible API, a pool of Gradio Spaces), and the registry
that builds the ones a channel names."""
