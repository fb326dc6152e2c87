"""Run a training script as one msrun worker and record how it ended, so the launcher can name a failed rank.

Usage (by the launch scripts): ``msrun ... scripts/msrun_worker.py train.py --key value ...``.
msrun reports a failed worker only by process id; this wrapper writes ``rank_<R>.pid`` when the worker
starts and ``rank_<R>.exit`` (the exit code) when it ends, into ``$WORKER_STATUS_DIR``.  The script runs
in this same process (as ``__main__``), so it behaves exactly as under ``python train.py``.
"""
import os
import runpy
import sys


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
