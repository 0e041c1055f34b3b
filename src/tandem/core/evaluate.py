"""Deterministic multi-episode evaluation."""

from __future__ import annotations

import logging
from typing import Callable

import gymnasium as gym
import numpy as np

log = logging.getLogger("tandem")

EVAL_SEED_OFFSET = 1_000_003  # eval episodes use seeds disjoint from training episodes'


def evaluate_policy(policy: Callable[[np.ndarray], np.ndarray], env: gym.Env, episodes: int,
                    seed: int, max_episode_steps: int = 100_000) -> dict:
    """Run ``episodes`` episodes with ``policy`` (flat obs -> env action), reset seeds
    seed+OFFSET+i. Returns per-episode returns and lengths and their summary statistics.

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
    if not episodes:  # None, not NaN: summary.json stays strict JSON
        return {"eval/return_mean": None, "eval/return_std": None, "eval/episodes": 0,
                "eval/length_mean": None, "returns": [], "lengths": []}
    r = np.asarray(returns, np.float64)
    return {"eval/return_mean": float(r.mean()), "eval/return_std": float(r.std()),
            "eval/episodes": episodes, "eval/length_mean": float(np.mean(lengths)),
            "returns": returns, "lengths": lengths}
