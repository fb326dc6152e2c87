"""Device and rank information of a local (non-ModelArts) run, read from the launcher's environment."""
import os


def _env_int(*names: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return default


def get_device_id() -> int:
    """Device index of this process (DEVICE_ID; 0 when unset)."""
    return _env_int("DEVICE_ID", default=0)


def get_device_num() -> int:
    """Number of workers (msrun: MS_WORKER_NUM; rank table scripts: RANK_SIZE)."""
    return _env_int("MS_WORKER_NUM", "RANK_SIZE", default=1)


def get_rank_id() -> int:
    """Rank of this worker (msrun: MS_NODE_ID; rank table scripts: RANK_ID)."""
    return _env_int("MS_NODE_ID", "RANK_ID", default=0)


def get_job_id() -> str:
    return "Local Job"
