"""Process and device setup: environment before MindSpore loads, then context and communication."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParallelInfo:
    rank: int = 0
    group_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only this rank writes checkpoints, metrics and plots."""
        return self.rank == 0


# Marks an ONEDNN_MAX_CPU_ISA that this project set (not the user), so that it may lift it again; children
# inherit both, and a cap the user set is never touched.
CAP_MARK = "PROXYLESSNAS_ONEDNN_CAP"


def configure_environment(device_target: str) -> None:
    """Set environment variables that must be in place before MindSpore runs its first kernel.

    On CPU, MindSpore 2.9/2.10's bundled oneDNN runs its depthwise and first-layer (3 input channels)
    convolutions as slow reference kernels on AVX-512 machines (the stem alone 59 ms against 1.1 ms);
    capping the ISA at AVX2 avoids that.  The cap is lifted again by :func:`lift_isa_cap` when the
    project's native kernels compute exactly those convolutions in GRAPH mode (then oneDNN's AVX-512 1x1
    convolutions are the faster ones; in PyNative mode the capped ones were).  A value the user set is
    kept.  oneDNN reads the variable at its first convolution, not at ``import mindspore``.
    """
    # "auto" may end on CPU, and the setting only concerns CPU kernels, so it is made for auto too
    if device_target in ("CPU", "auto") and "ONEDNN_MAX_CPU_ISA" not in os.environ:
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        os.environ[CAP_MARK] = "AVX2"


def lift_isa_cap(reason: str) -> bool:
    """Remove the AVX2 cap :func:`configure_environment` set (never one the user set); True when removed.

    Takes effect only if MindSpore has not run a oneDNN convolution yet in this process.
    """
    if os.environ.get(CAP_MARK) != "AVX2" or os.environ.get("ONEDNN_MAX_CPU_ISA") != "AVX2":
        return False
    del os.environ["ONEDNN_MAX_CPU_ISA"]
    os.environ[CAP_MARK] = "lifted"
    _LOG.info("oneDNN may use every instruction set of this CPU (no AVX2 cap): %s", reason)
    return True


def onednn_isa() -> str:
    """The oneDNN instruction-set setting now in force for a MindSpore that has not run a kernel yet:
    the cap, or "lifted" / "unset" when there is none."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA") or ("lifted" if os.environ.get(CAP_MARK) == "lifted" else "unset")


def resolve_device_target(target: str) -> str:
    """``auto``: Ascend if this MindSpore can use one, else GPU, else CPU (logged); other targets unchanged."""
    if target != "auto":
        return target
    configure_environment("auto")
    import mindspore as ms

    # is_available only looks for the device plugin (no device is claimed), unlike set_device, which ends in a
    # stack dump when the backend is missing; its warnings about missing plugins are the expected answer here
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        found = [c for c in ("Ascend", "GPU") if ms.hal.is_available(c)]
    finally:
        logging.disable(previous)
    if found:
        _LOG.info("device_target auto: %s", found[0])
        return found[0]
    _LOG.info("device_target auto: CPU (this MindSpore finds no Ascend or GPU backend; "
              "pass --device_target Ascend or GPU to insist)")
    return "CPU"


def set_device(target: str, device_id=None) -> None:
    """``mindspore.set_device`` that accepts a process whose runtime already runs on that device."""
    import mindspore as ms

    try:
        ms.set_device(target, device_id)
    except RuntimeError:
        # the runtime of this process already started (several jobs in one process, e.g. tests):
        # fine when it runs on the requested device
        if ms.get_context("device_target") != target:
            raise


def init_context(config) -> ParallelInfo:
    """Set the MindSpore context from the config; start communication only for distributed runs."""
    config.device_target = resolve_device_target(config.device_target)
    configure_environment(config.device_target)
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE if config.mode == "GRAPH" else ms.PYNATIVE_MODE)
    if not config.get("run_distribute"):
        set_device(config.device_target, config.device_id if config.device_target != "CPU" else None)
        return ParallelInfo()
    from mindspore.communication import get_group_size, get_rank, init

    # rank-table launches give each process its device in DEVICE_ID; msrun assigns devices itself
    rank_table_device = os.environ.get("DEVICE_ID") if os.environ.get("RANK_TABLE_FILE") else None
    set_device(config.device_target, int(rank_table_device) if rank_table_device else None)
    init()
    info = ParallelInfo(rank=get_rank(), group_size=get_group_size())
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=info.group_size)
    _LOG.info("distributed: rank %d of %d", info.rank, info.group_size)
    return info
