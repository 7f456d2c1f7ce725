"""The media worker's decisions: pure, no I/O."""
