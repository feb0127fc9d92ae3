"""Activations and softmax: one operation per output element (the seed's ReLU/GELU rule).

Listed explicitly so the rule does not depend on aten's ``pointwise`` tag (hardswish, glu and
prelu's kernel carry none). GLU counts its output elements (half the input), like every other
activation. Backward kernels count one per gradient element.
"""

from __future__ import annotations

from pytest_flopbudget.counting.formulas import Cost, first_shape, numel, per_element


def activation(*args: object, out: object, **kwargs: object) -> Cost:
    return per_element(numel(first_shape(out)))


_FORWARD = (
    "relu relu6 gelu silu sigmoid tanh hardswish hardsigmoid hardtanh leaky_relu elu selu celu "
    "mish softplus softshrink hardshrink _prelu_kernel prelu glu threshold rrelu_with_noise "
    "log_sigmoid_forward log_sigmoid logit sgn sign"
).split()
_BACKWARD = (
    "threshold_backward gelu_backward silu_backward sigmoid_backward tanh_backward "
    "hardswish_backward hardsigmoid_backward hardtanh_backward leaky_relu_backward elu_backward "
    "mish_backward softplus_backward glu_backward _prelu_kernel_backward log_sigmoid_backward "
    "softshrink_backward hardshrink_backward rrelu_with_noise_backward logit_backward"
).split()
_SOFTMAX = (
    "_softmax _log_softmax _safe_softmax _softmax_backward_data _log_softmax_backward_data"
).split()

RULES = {name: activation for name in _FORWARD + _BACKWARD + _SOFTMAX}
