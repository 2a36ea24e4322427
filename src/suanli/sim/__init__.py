"""The digital twin: a discrete-event simulator that runs the real scheduler on real traces."""
