"""Host (NumPy) replay buffer for the Gymnasium drivers.

Transitions are written into preallocated ring arrays; every observation leaf keeps its own
shape and dtype (a uint8 image stays uint8). ``sample`` draws G batches of B indices at once,
so G gradient steps run in one jitted ``update_many`` call. Besides what the updates use,
each row records ``truncated`` and ``first`` (the observation began an episode), so the
buffer can be turned back into episodes (an online run as an offline dataset).

Rows are numbered by ``count`` (all rows ever added; row g lives at ring position g %
capacity). A checkpoint stores the buffer as a segmented store (``tandem.run.checkpoint.Segmented`` over
:meth:`HostReplay.rows`): only the rows added since the previous checkpoint are written. A resumed run samples exactly what an
uninterrupted run would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tandem.core.spaces import Space, build, get_leaf, leaf_name, leaves
from tandem.core.types import Transition

_SCALARS = {"reward": np.float32, "terminated": np.float32, "truncated": np.bool_,
            "first": np.bool_}


class HostReplay:
    """Ring buffer of transitions. ``data`` maps field names to arrays [capacity, ...]:
    ``obs`` and ``next_obs`` (or ``obs/<leaf>`` per leaf of a Dict/Tuple space), ``action``,
    ``reward``, ``terminated``, ``truncated``, ``first``."""

    def __init__(self, capacity: int, obs_space: Space, action_dim: int) -> None:
        self.capacity, self.obs_space, self.count = int(capacity), obs_space, 0
        self._leaves = [(path, leaf_name(path), leaf) for path, leaf in leaves(obs_space)]
        self._single = obs_space.is_leaf
        # np.zeros maps pages lazily, so a large capacity costs memory only as it fills.
        self.data: dict[str, np.ndarray] = {}
        for prefix in ("obs", "next_obs"):
            for _, name, leaf in self._leaves:
                self.data[_key(prefix, name)] = np.zeros((self.capacity,) + leaf.shape,
                                                         leaf.dtype)
        self.data["action"] = np.zeros((self.capacity, action_dim), np.float32)
        for k, dtype in _SCALARS.items():
            self.data[k] = np.zeros((self.capacity,), dtype)

    @property
    def pos(self) -> int:
        return self.count % self.capacity

    @property
    def size(self) -> int:
        return min(self.count, self.capacity)

    def add(self, obs: Any, action, reward, next_obs: Any, terminated, truncated=False,
            first=False) -> None:
        """One transition (canonical observations, see ``tandem.core.spaces.canonical``)."""
        i, d = self.count % self.capacity, self.data
        if self._single:
            d["obs"][i] = obs
            d["next_obs"][i] = next_obs
        else:
            for path, name, _ in self._leaves:
                d[_key("obs", name)][i] = get_leaf(obs, path)
                d[_key("next_obs", name)][i] = get_leaf(next_obs, path)
        d["action"][i] = action
        d["reward"][i] = reward
        d["terminated"][i] = terminated
        d["truncated"][i] = truncated
        d["first"][i] = first
        self.count += 1

    def add_batch(self, obs: Any, action, reward, next_obs: Any, terminated, truncated,
                  first) -> None:
        """n transitions at once (a leading [n] axis everywhere, n <= capacity), in order."""
        n = len(reward)
        idx = (self.count + np.arange(n)) % self.capacity
        for path, name, _ in self._leaves:
            self.data[_key("obs", name)][idx] = get_leaf(obs, path)
            self.data[_key("next_obs", name)][idx] = get_leaf(next_obs, path)
        for k, v in (("action", action), ("reward", reward), ("terminated", terminated),
                     ("truncated", truncated), ("first", first)):
            self.data[k][idx] = v
        self.count += n

    def _obs(self, prefix: str, idx: np.ndarray) -> Any:
        if self._single:
            return self.data[prefix][idx]
        names = {path: name for path, name, _ in self._leaves}
        return build(self.obs_space, lambda path, _: self.data[_key(prefix, names[path])][idx])

    def sample(self, rng: np.random.Generator, num_batches: int, batch_size: int) -> Transition:
        """G x B transitions drawn uniformly with replacement: arrays shaped [G, B, ...]."""
        idx = rng.integers(0, self.size, size=(num_batches, batch_size))  # [G, B]
        d = self.data
        return Transition(self._obs("obs", idx), d["action"][idx], d["reward"][idx],
                          self._obs("next_obs", idx), d["terminated"][idx])

    # ------------------------------------------------------------------ checkpointing
    def rows(self, a: int, b: int) -> dict[str, np.ndarray]:
        """Every field of rows a..b-1 by their count (still in the ring: a >= count -
        capacity), oldest first."""
        pos = np.arange(a, b) % self.capacity
        return {k: v[pos] for k, v in self.data.items()}

    def restore(self, arrays: dict[str, np.ndarray], store: dict | None,
                legacy: dict | None = None, prefix: str = "replay") -> None:
        """Fill the buffer from a loaded checkpoint: ``store`` is its store meta (count,
        capacity; rows ``<prefix>/<field>`` oldest first). A checkpoint written before
        segments (issue 14) has the buffer inline and ``legacy`` = {capacity, pos, size}.
        ValueError when anything does not fit this buffer."""
        if store is not None:
            count, cap = store["count"], store["capacity"]
            first_row = max(0, count - cap)
            self._check_ints(cap, count)
            positions = np.arange(first_row, count) % self.capacity
        else:
            saved = [legacy[k] for k in ("capacity", "pos", "size")]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in saved):
                raise ValueError(f"replay capacity/pos/size must be integers, got {saved}")
            cap, pos, size = saved
            if cap != self.capacity or not (0 <= size <= cap and 0 <= pos < cap):
                raise ValueError(f"replay capacity {cap}, pos {pos}, size {size} do not fit "
                                 f"the run's buffer_size {self.capacity}")
            count = size if size < cap else cap + pos  # any count with count % cap == pos
            positions = np.arange(size)
        for key, buf in self.data.items():
            src = arrays.get(f"{prefix}/{key}")
            if src is None and store is None and key in ("truncated", "first"):
                continue  # not recorded before issue 14
            if src is None:
                raise KeyError(f"{prefix}/{key}")
            if src.shape != (len(positions),) + buf.shape[1:]:
                raise ValueError(f"{prefix}/{key} has shape {src.shape}, expected "
                                 f"{(len(positions),) + buf.shape[1:]}")
            buf[positions] = src
        self.count = count

    def _check_ints(self, cap: Any, count: Any) -> None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (cap, count)):
            raise ValueError(f"replay capacity/count must be integers, got {cap!r}, {count!r}")
        if cap != self.capacity or count < 0:
            raise ValueError(f"replay capacity {cap}, count {count} do not fit the run's "
                             f"buffer_size {self.capacity}")


def _key(prefix: str, leaf: str) -> str:
    return f"{prefix}/{leaf}" if leaf else prefix
