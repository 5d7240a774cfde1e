"""VHD stream encoding and decoding: pure functions, no I/O."""
