"""Performance harness for the bundles' networks, inferers and data pipelines (issue 9).

Run ``python -m benchmarks.harness --help`` from the repository root; results go to ``benchmarks/results/``.
"""
