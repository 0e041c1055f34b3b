"""Deterministic multi-episode evaluation."""

from __future__ import annotations

import logging
from typing import Any, Callable

import gymnasium as gym
import numpy as np

log = logging.getLogger("tandem")

EVAL_SEED_OFFSET = 1_000_003  # eval episodes use seeds disjoint from training episodes'


def evaluate_policy(policy: Callable[[Any], np.ndarray], env: gym.Env, episodes: int,
                    seed: int, max_episode_steps: int = 100_000) -> dict:
    """Run ``episodes`` episodes with ``policy`` (raw env obs -> env action), reset seeds
    seed+OFFSET+i. Returns ``{"returns": [...], "lengths": [...]}`` per episode.

    An episode that neither terminates nor truncates within ``max_episode_steps`` is cut
    there (with a warning) so an env without a time limit cannot hang evaluation.
    """
    returns, lengths = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + i)
        total, n, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            n += 1
            done = terminated or truncated
            if n >= max_episode_steps and not done:
                log.warning("eval episode %d reached %d steps without ending; cut there (give "
                            "the env a time limit)", i, n)
                done = True
        returns.append(total)
        lengths.append(n)
    return {"returns": returns, "lengths": lengths}
