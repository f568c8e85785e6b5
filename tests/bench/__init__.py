"""Benchmarks, run on demand: ``python -m tests.bench [--quick] [--json FILE] [--only ROWS]``.

Never collected by pytest (only ``test_*.py`` files are, and the one here tests
the harness's pure parts). See README.md in this folder.
"""
