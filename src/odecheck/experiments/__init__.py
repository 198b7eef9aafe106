"""Experiments: the claims and verify, falsify, TOML runs (config, runner), sweeps, the reproductions, depth
parametrizations, analyze over files, and Hypothesis strategies. Imports every layer below it."""
