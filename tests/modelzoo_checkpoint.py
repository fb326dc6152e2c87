"""ModelZoo-style checkpoints made the way the ModelZoo makes them: saved from a real training cell.

The seed trained with ``Model.train`` (``nn.SGD`` over two parameter groups, loss scaling) and a
``ModelCheckpoint`` callback; other ModelZoo entries save an
``nn.TrainOneStepCell`` (with ``nn.Momentum`` or ``nn.SGD``) directly.  Either way the file holds, besides
the weights, what the training cell owns: ``momentum``, ``learning_rate``, ``global_step``, the optimizer
slots (``moments.*`` or ``accum.*``/``stat.*``) and, with loss scaling, ``scale_sense`` and its counters.
"""
from pathlib import Path

import numpy as np

KINDS = ("momentum", "sgd", "loss_scale", "model_train")


def _batch(num_classes: int, image_size: int, seed: int, n: int = 4):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, 3, image_size, image_size)).astype(np.float32)
    labels = (np.arange(n) % num_classes).astype(np.int32)
    return images, labels


def save_modelzoo_checkpoint(folder: Path, kind: str, arch: str = "proxylessnas_mobile", num_classes: int = 3,
                             image_size: int = 32, seed: int = 0) -> Path:
    """Train ``arch`` for one or two steps with a ModelZoo-style training cell and save it; returns the .ckpt."""
    import mindspore as ms
    from mindspore import nn
    from mindspore.train import CheckpointConfig, Model, ModelCheckpoint
    from mindspore.amp import FixedLossScaleManager

    from src import create_model

    ms.set_seed(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    net = create_model(arch, num_classes=num_classes)
    loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    if kind == "model_train":
        # the seed's train.py: nn.SGD over two parameter groups and a per-step learning-rate array
        params = net.trainable_params()
        no_decay = [any(k in p.name for k in ("beta", "gamma", "bias")) for p in params]
        groups = [{"params": [p for p, skip in zip(params, no_decay) if not skip], "weight_decay": 1e-4},
                  {"params": [p for p, skip in zip(params, no_decay) if skip]}, {"order_params": params}]
        opt = nn.SGD(groups, learning_rate=ms.Tensor(np.array([0.01, 0.02], np.float32)), momentum=0.9,
                     weight_decay=1e-4)
    elif kind == "sgd":
        opt = nn.SGD(net.trainable_params(), learning_rate=0.01, momentum=0.9, weight_decay=1e-4)
    else:
        # the seed: a per-step learning-rate array, momentum 0.9, weight decay
        opt = nn.Momentum(net.trainable_params(), learning_rate=ms.Tensor(np.array([0.01, 0.02], np.float32)),
                          momentum=0.9, weight_decay=1e-4)
    images, labels = _batch(num_classes, image_size, seed)
    if kind == "model_train":
        data = ms.dataset.NumpySlicesDataset({"image": images, "label": labels}, shuffle=False).batch(2)
        # the seed used DynamicLossScaleManager on Ascend; MindSpore accepts only this one on CPU
        model = Model(net, loss_fn=loss, optimizer=opt, metrics={"acc"},
                      loss_scale_manager=FixedLossScaleManager(1024.0, drop_overflow_update=False))
        callback = ModelCheckpoint(prefix="proxylessnas-mobile-rank0", directory=str(folder),
                                   config=CheckpointConfig(save_checkpoint_steps=2, keep_checkpoint_max=1))
        model.train(1, data, callbacks=[callback], dataset_sink_mode=False)
        return sorted(folder.glob("proxylessnas-mobile-rank0*.ckpt"))[-1]
    if kind == "loss_scale":
        cell = nn.TrainOneStepWithLossScaleCell(nn.WithLossCell(net, loss), opt,
                                                scale_sense=ms.Tensor(np.float32(1024.0)))
    elif kind in ("momentum", "sgd"):
        cell = nn.TrainOneStepCell(nn.WithLossCell(net, loss), opt)
    else:
        raise ValueError(f"unknown kind {kind!r}: one of {KINDS}")
    cell.set_train(True)
    if kind != "loss_scale":  # its overflow check (NPUGetFloatStatusV2) exists on Ascend/GPU only: saved untrained
        cell(ms.Tensor(images), ms.Tensor(labels))
    path = folder / f"{kind}.ckpt"
    ms.save_checkpoint(cell, str(path))
    return path
