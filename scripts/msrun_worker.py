"""Run a training script as one msrun worker and record how it ended, so the launcher can name a failed rank.

Usage (by the launch scripts): ``msrun ... scripts/msrun_worker.py train.py --key value ...``.
msrun reports a failed worker only by process id; this wrapper writes ``rank_<R>.pid`` when the worker
starts and ``rank_<R>.exit`` (the exit code) when it ends, into ``$WORKER_STATUS_DIR``.  The script runs
in this same process (as ``__main__``), so it behaves exactly as under ``python train.py``.

msrun also runs the same command as its scheduler.  After a worker dies, msrun stops the other workers
but then waits for the scheduler, which keeps waiting for the dead worker until ``cluster_time_out``
(10 minutes by default).  So in the scheduler this wrapper watches the status folder and ends the
scheduler as soon as a worker of this node has failed.
"""
import glob
import os
import runpy
import sys
import threading
import time


def _exit_code(err: SystemExit) -> int:
    """The process exit code that ``raise SystemExit(err.code)`` produces."""
    if err.code is None:
        return 0
    if isinstance(err.code, int):
        return err.code
    return 1


def _record(status_dir: str, rank: str, suffix: str, value: int) -> None:
    path = os.path.join(status_dir, f"rank_{rank}.{suffix}")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(f"{value}\n")
    os.replace(path + ".tmp", path)


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie, killed but not yet reaped, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def failed_worker(status_dir: str) -> str:
    """A description of the first worker that ended with an error or vanished without a status, else ''."""
    for pid_file in sorted(glob.glob(os.path.join(status_dir, "rank_*.pid"))):
        rank = os.path.basename(pid_file)[len("rank_"):-len(".pid")]
        exit_file = os.path.join(status_dir, f"rank_{rank}.exit")
        try:
            if os.path.exists(exit_file):
                with open(exit_file, encoding="utf-8") as f:
                    code = f.read().strip()
                if code and code != "0":
                    return f"rank {rank} exited with code {code}"
                continue
            with open(pid_file, encoding="utf-8") as f:
                pid = int(f.read())
        except (OSError, ValueError):
            continue  # being written
        # The exit status is written before the process ends, so none now means it was killed.
        if not _alive(pid) and not os.path.exists(exit_file):
            return f"rank {rank} (process {pid}) ended without an exit status (killed)"
    return ""


def _watch_workers(status_dir: str, interval: float = 1.0) -> None:
    while True:
        time.sleep(interval)
        failure = failed_worker(status_dir)
        if failure:
            print(f"msrun_worker: {failure}; stopping the scheduler so that msrun returns now",
                  file=sys.stderr, flush=True)
            os._exit(1)


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: msrun_worker.py SCRIPT [--key value ...]", file=sys.stderr)
        return 2
    script = os.path.abspath(sys.argv[1])
    status_dir = os.environ.get("WORKER_STATUS_DIR", "")
    # msrun's scheduler runs the same command; only workers report.  RANK_ID is exported by msrun
    # whenever rank ids are fixed in advance (one node, or --node_rank given).
    rank = os.environ.get("RANK_ID", "")
    report = bool(status_dir) and os.environ.get("MS_ROLE") != "MS_SCHED" and rank != ""
    if report:
        _record(status_dir, rank, "pid", os.getpid())
    if status_dir and os.environ.get("MS_ROLE") == "MS_SCHED":
        threading.Thread(target=_watch_workers, args=(status_dir,), daemon=True).start()
    sys.argv = [script] + sys.argv[2:]
    sys.path[0] = os.path.dirname(script)
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as err:
        code = _exit_code(err)
        raise
    except BaseException:
        code = 1
        raise
    finally:
        if report:
            _record(status_dir, rank, "exit", code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
