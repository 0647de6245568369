"""Helpers of the tests, not tests themselves: local servers, forked CLI runs, README blocks,
file barriers, components used as ``_target_``, and scripts that run the app held or killed
at a chosen point (``python tests/support/<name>.py ...``).

pytest puts tests/ on ``sys.path`` (it has no ``__init__.py``), so tests import
``support.<module>``; a subprocess that must import one (a ``_target_`` such as
``support.barrier.linear_warmup_after_barrier``) gets tests/ on its ``PYTHONPATH``.
"""
