"""Performance benches: each prints its table; run one from the project folder as
`python -m bench.NAME` (`--quick`: small sizes, what CI runs). Shared helpers in bench/common.py."""
