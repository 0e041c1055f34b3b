"""Drivers on Ray: rollout workers for IMPALA and for the off-policy ``--workers`` learner."""
