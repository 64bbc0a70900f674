"""Offline evaluation: the MovieLens data set (real or synthetic), logged bandit
feedback, off-policy estimators and the replay of policies over a log.

The replay runs the same policy code as the online services (``cineamate.policies``).
"""
