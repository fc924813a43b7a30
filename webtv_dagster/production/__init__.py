"""Production: one clip made stage by stage (prompt, takes, clip, music, broadcast clip), how
many clips a channel needs, the checks before air, the channel's ident, preview links, the
queue of viewers' shot requests the prompt stage draws from, and retention. Plain Python over
the model backends and media tools: no Dagster."""
