"""raykube's benchmarks: ``python -m benchmarks --quick|--full --out DIR`` (see __main__)."""
