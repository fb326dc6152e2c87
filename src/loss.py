"""Cross-entropy with label smoothing."""
import mindspore as ms
from mindspore import nn, ops


class CrossEntropySmooth(nn.Cell):
    """Softmax cross-entropy against smoothed one-hot targets (mean over the batch).

    The target puts ``1 - smoothing`` on the true class and spreads ``smoothing`` evenly over
    all classes (the usual definition: the true class gets ``1 - smoothing + smoothing / C``).
    """

    def __init__(self, num_classes: int, smoothing: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.confidence = 1.0 - smoothing
        self.smoothing = smoothing

    def construct(self, logits, label):
        logits = ops.cast(logits, ms.float32)
        log_prob = ops.log_softmax(logits, axis=-1)
        nll = -ops.gather_elements(log_prob, 1, ops.expand_dims(label, 1)).squeeze(1)
        uniform = -log_prob.mean(axis=-1)
        return (self.confidence * nll + self.smoothing * uniform).mean()
