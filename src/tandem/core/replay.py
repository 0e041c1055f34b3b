"""Host (NumPy) replay buffer for the Gymnasium path.

Transitions are written into preallocated ring arrays; ``sample`` draws G batches of B indices
at once, so G gradient steps run in one jitted ``update_many`` call. The buffer's contents and
its write position are part of a checkpoint, so a resumed run samples exactly what an
uninterrupted run would.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tandem.core.types import Transition

_FIELDS = Transition._fields


@dataclasses.dataclass
class HostReplay:
    """Ring buffer of transitions, stored as float32 NumPy arrays."""

    capacity: int
    obs_dim: int
    action_dim: int
    pos: int = 0
    size: int = 0
    data: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.data:
            # np.zeros maps pages lazily, so a large capacity costs memory only as it fills.
            self.data = {
                "obs": np.zeros((self.capacity, self.obs_dim), np.float32),
                "action": np.zeros((self.capacity, self.action_dim), np.float32),
                "reward": np.zeros((self.capacity,), np.float32),
                "next_obs": np.zeros((self.capacity, self.obs_dim), np.float32),
                "terminated": np.zeros((self.capacity,), np.float32),
            }

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        i = self.pos
        d = self.data
        d["obs"][i] = obs
        d["action"][i] = action
        d["reward"][i] = reward
        d["next_obs"][i] = next_obs
        d["terminated"][i] = terminated
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def add_batch(self, obs, action, reward, next_obs, terminated) -> None:
        """n transitions at once (arrays with a leading [n] axis, n <= capacity), in order."""
        n = len(reward)
        idx = (self.pos + np.arange(n)) % self.capacity
        for k, v in zip(_FIELDS, (obs, action, reward, next_obs, terminated)):
            self.data[k][idx] = v
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, rng: np.random.Generator, num_batches: int, batch_size: int) -> Transition:
        """G x B transitions drawn uniformly with replacement: arrays shaped [G, B, ...]."""
        idx = rng.integers(0, self.size, size=(num_batches, batch_size))  # [G, B]
        return Transition(*(self.data[k][idx] for k in _FIELDS))

    # ------------------------------------------------------------------ checkpointing
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The filled part of the buffer (a copy is not made; callers only read it)."""
        return {f"replay/{k}": v[: self.size] for k, v in self.data.items()}

    def state_meta(self) -> dict:
        return {"capacity": self.capacity, "pos": self.pos, "size": self.size}

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray], obs_dim: int,
                   action_dim: int, capacity: int) -> "HostReplay":
        """The buffer saved by :meth:`state_arrays` / :meth:`state_meta`; ``capacity`` is the
        run's buffer_size, which the saved one must equal (ValueError otherwise)."""
        saved = [meta[k] for k in ("capacity", "pos", "size")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in saved):
            raise ValueError(f"replay capacity/pos/size must be integers, got {saved}")
        cap, pos, size = saved
        if cap != capacity or not (0 <= size <= cap and 0 <= pos < cap):
            raise ValueError(f"replay capacity {cap}, pos {pos}, size {size} do not fit the "
                             f"run's buffer_size {capacity}")
        buf = cls(cap, obs_dim, action_dim)
        for k in _FIELDS:
            src = arrays[f"replay/{k}"]
            if src.shape[0] != size or src.shape[1:] != buf.data[k].shape[1:]:
                raise ValueError(f"replay/{k} has shape {src.shape}, expected "
                                 f"{(size,) + buf.data[k].shape[1:]}")
            buf.data[k][:size] = src
        buf.pos, buf.size = pos, size
        return buf
