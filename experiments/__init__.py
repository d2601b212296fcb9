"""Finished research scripts (questions answered, results quoted in the README and docs/): kept
runnable from the project folder as `python -m experiments.NAME`; see experiments/README.md."""
