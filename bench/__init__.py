"""Speed and time-to-accuracy benchmarks of cnnlab against its peers (see BENCHMARKS.md)."""
