"""Helpers shared by several test files (pytest puts ``tests/`` on ``sys.path``).

* ``procs``: which processes run, read from ``/proc`` (``alive``, ``cmdline``,
  ``descendants``);
* ``secure``: ``SecureSession``, the whole system on the secure profile, one user per
  process (its fixture ``secure_session`` is in ``conftest.py``).
"""
