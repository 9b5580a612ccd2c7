"""The ImageStream loop: spec tags, imports and the stream's own status.

`plan` decides what a stream's spec asks of its status (reference tags,
copies from other tags and streams, imports to run); `reconciler` carries the
plan out through the shared `StreamRecorder` and schedules the next import.
"""
