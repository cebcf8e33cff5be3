"""Benchmarks: ordinary commands that compare Countersign with a bare Flask baseline in one run."""
