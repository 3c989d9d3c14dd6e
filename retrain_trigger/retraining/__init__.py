"""Retraining: curation of a segment's stored events, versioned dataset snapshots, job launchers,
the workflow from a retraining request to a finished job, and the fine-tuning job itself."""
