"""What campaigns decide, without I/O: calling hours, pacing, retries, suppression."""
