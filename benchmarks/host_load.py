"""What else the machine did during a timing: steal time and other processes' CPU time.

A virtual machine's host may run other work on the physical cores behind our
virtual CPUs; Linux counts the time a virtual CPU was ready but not running as
'steal' in /proc/stat. A synchronous two-thread fit waits for its slower
thread at every batch, so steal on either CPU slows it, where a one-thread fit
loses only what its own CPU lost. Processes inside this machine (another job,
a test run) show as busy CPU time that is not this process's.

    with HostLoad() as load:
        model.fit(X, y)
    print(load.steal_seconds, load.other_seconds)

Both are NaN where /proc/stat is missing (not Linux). The kernel counts in ticks
of 1/100 s, summed over the CPUs.
"""

import math
import os

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_ticks():
    """(busy, steal) ticks over all CPUs since boot, or None without /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            # cpu  user nice system idle iowait irq softirq steal guest guest_nice
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq, steal


def _own_cpu_seconds():
    """User and system time of this process's threads (numba's workers included)."""
    times = os.times()
    return times.user + times.system


class HostLoad:
    """Context manager: steal_seconds and other_seconds of the machine during its block."""

    steal_seconds = other_seconds = math.nan

    def __enter__(self):
        self._start = _machine_ticks(), _own_cpu_seconds()
        return self

    def __exit__(self, *exc_info):
        end = _machine_ticks()
        start_ticks, start_own = self._start
        if start_ticks is None or end is None:
            return False
        busy = (end[0] - start_ticks[0]) / _TICKS_PER_SECOND
        self.steal_seconds = (end[1] - start_ticks[1]) / _TICKS_PER_SECOND
        # the process's own time is counted precisely, the machine's in ticks: clip the rounding
        self.other_seconds = max(0.0, busy - (_own_cpu_seconds() - start_own))
        return False
