"""Scaling out on Ray: rollout workers (IMPALA, off-policy ``--workers``) and sweeps."""
