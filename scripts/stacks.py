"""Condense `gdb -batch -ex "thread apply all bt"` output to one line per distinct stack.

Used by scripts/test.sh when a test hangs: pytest-timeout's dump shows Python frames only,
and a hang inside XLA or a native library is only visible in the native stacks. Each line
is one distinct stack, the threads (name [LWP]) that share it, and its frames' function
names (innermost first), without arguments, addresses and libc wait frames.

    python scripts/stacks.py gdb_output.txt
"""

from __future__ import annotations

import re
import sys

THREAD = re.compile(r'^Thread \d+ \(Thread 0x[0-9a-f]+ \(LWP (\d+)\) "([^"]*)"\)')
FRAME = re.compile(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(.+?)(?: \(.*)?$")
NOISE = ("futex", "pthread_cond", "condition_variable", "syscall", "__GI_", "clone3",
         "start_thread", "??", "std::__invoke", "std::_Function_handler", "ThreadProxy")


def function_name(frame: str) -> str:
    name = frame.split(" from ")[0].split(" at ")[0]
    depth, out = 0, []
    for ch in name:  # drop template arguments and argument lists
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    return "".join(out).strip()


def condense(text: str, max_frames: int = 14) -> list[str]:
    """One line per distinct stack, with the threads that share it (idle pool threads all
    look alike, so a hung process of twenty threads shrinks to a few lines)."""
    stacks: dict[str, list[str]] = {}
    current, frames = None, []

    def flush():
        if current is not None:
            stacks.setdefault(" < ".join(frames[:max_frames]), []).append(current)

    for raw in text.splitlines():
        t = THREAD.match(raw)
        if t:
            flush()
            current, frames = f"{t.group(2)} [{t.group(1)}]", []
            continue
        f = FRAME.match(raw)
        if f and current is not None:
            name = function_name(f.group(1))
            if name and not any(n in name for n in NOISE):
                frames.append(name)
    flush()
    return [f"{len(who)} thread(s) {', '.join(who[:4])}{' ...' if len(who) > 4 else ''}: "
            f"{stack}" for stack, who in stacks.items()]


if __name__ == "__main__":
    with open(sys.argv[1], errors="replace") as fh:
        print("\n".join(condense(fh.read())))
