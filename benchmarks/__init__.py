"""Performance harness for the bundles' networks, inferers and data pipelines.

Run ``python -m benchmarks.harness --help`` from the repository root; results go to ``benchmarks/results/``.
"""
