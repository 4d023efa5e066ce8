"""Fixtures for testing galclip and code built on it; the library itself never imports this.

- :mod:`galclip.testing.examples`: a small clean file of every format the readers take, and
  helpers to set or read one of its values (the readers' range tests and fuzzing start from them).
- :mod:`galclip.testing.corrupt`: seeded byte corruptions of a file and impossible values per
  kind of field (``benchmarks/reliability.py`` and the tests fuzz the readers with them).
"""
