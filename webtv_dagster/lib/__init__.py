"""Dagster-aware code that defines nothing: the resource classes, partitions, run tags and
asset keys, a clip stage run for every clip of a run, what Dagster's storage says about
clips, and the deletion of Dagster's records of what retention removed (as
dagster-open-platform keeps such code in `lib/`)."""
