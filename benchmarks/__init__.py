"""Side-by-side performance measurements; `python -m benchmarks [--quick] [--only SECTION]`."""
