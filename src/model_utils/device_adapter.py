"""Picks the local or the ModelArts view of devices and ranks (model-zoo convention)."""
from src.model_utils import local_adapter


def _source(config=None):
    if config is not None and config.get("enable_modelarts"):
        from src.model_utils import moxing_adapter
        return moxing_adapter
    return local_adapter


def get_device_id(config=None) -> int:
    return _source(config).get_device_id()


def get_device_num(config=None) -> int:
    return _source(config).get_device_num()


def get_rank_id(config=None) -> int:
    return _source(config).get_rank_id()


def get_job_id(config=None) -> str:
    return _source(config).get_job_id()
