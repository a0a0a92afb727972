"""Side-by-side benchmarks: `python -m benchmarks.<name>`; figures go to RESULTS.md."""
