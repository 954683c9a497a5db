# SPDX-License-Identifier: MIT
"""The program devemu-run and devemu-record run, as a shell runs a job: in a process group of its own
that holds the terminal while it runs, so every signal reaches it exactly once.

Ctrl-C and Ctrl-\\ from the terminal go to the program's group only (the terminal's foreground); a
signal sent to devemu-run itself, by kill() or to its process group, is passed on to the program's
group. With the program in devemu-run's own group a kill() of devemu-run could not be told from a
group signal that had already reached the program, so one of them would be lost or doubled. Ctrl-Z
stops the program and then devemu-run, so the shell sees its job stop; fg continues both. The
program dies with devemu-run (PR_SET_PDEATHSIG), as it would with a group SIGKILL.
"""

import ctypes
import os
import signal

# Passed on to the program's group when devemu-run receives them.
FORWARDED = (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_PR_SET_PDEATHSIG = 1


def controlling_terminal():
    """A descriptor of the controlling terminal when this process group holds it (devemu-run runs in the
    foreground), else None."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if os.tcgetpgrp(fd) == os.getpgrp():
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _hand_terminal(tty, pgrp):
    """Gives the terminal's foreground to pgrp (SIGTTOU ignored: the caller may be in the background)."""
    if tty is None:
        return
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(tty, pgrp)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, previous)


def enter_child(tty, parent):
    """In the forked child, before exec: a process group of its own, the terminal, death with the parent."""
    os.setpgid(0, 0)
    _hand_terminal(tty, os.getpid())
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(128 + signal.SIGKILL)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTTOU, signal.SIGTTIN, signal.SIGTSTP) + FORWARDED:
        signal.signal(sig, signal.SIG_DFL)  # Python's own dispositions would survive exec


def wait_job(pid, tty):
    """In the parent: passes signals on to the program's group, follows it through Ctrl-Z and fg, takes
    the terminal back at the end. Returns the wait status of its exit."""
    try:
        os.setpgid(pid, pid)  # also here: whichever of the two runs first
    except OSError:
        pass
    _hand_terminal(tty, pid)
    previous = {}

    def forward(signum, _frame):
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass

    try:
        for sig in FORWARDED:
            previous[sig] = signal.signal(sig, forward)
        while True:
            try:
                _, status = os.waitpid(pid, os.WUNTRACED)
            except InterruptedError:
                continue
            if not os.WIFSTOPPED(status):
                return status
            # The program stopped (Ctrl-Z): stop too, so the shell sees the job stop; on fg, go on.
            _hand_terminal(tty, os.getpgrp())
            os.kill(os.getpid(), signal.SIGSTOP)
            _hand_terminal(tty, pid)
            os.killpg(pid, signal.SIGCONT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _hand_terminal(tty, os.getpgrp())
