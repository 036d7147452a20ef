"""Tiny functions built on base.runtime, used only by the embedded platform's own tests.

They start in well under a second and need no media, so gateway behaviour (queueing, cold
starts, OOM kills, replica deaths) can be tested with real processes quickly.
"""
