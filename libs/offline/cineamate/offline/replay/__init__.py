"""Replay of bandit policies over a logged stream of ratings, with off-policy estimates."""
