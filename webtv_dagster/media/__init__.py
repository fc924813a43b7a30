"""Media tools: every FFmpeg and ffprobe command of the project (probing, conforming,
normalizing to the broadcast profile, measuring, previews, the playout's stream commands)."""
