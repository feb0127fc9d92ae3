"""Activations and softmax: one operation per output element (the seed's ReLU/GELU rule).

Listed explicitly so the rule does not depend on aten's ``pointwise`` tag (hardswish, glu and
prelu's kernel carry none). GLU counts its output elements (half the input), like every other
activation. Backward kernels count one per gradient element.

Three ``torch.nn`` activations have no aten kernel of their own and are written in Python out of
elementwise pieces: Softsign (``x / (1 + |x|)``), Tanhshrink (``x - tanh(x)``) and Softmin
(``softmax(-x)``). ``FUNCTION_RULES`` counts each as one unit, one per output element, like every
other activation, so the rule does not depend on how an activation happens to be implemented.
A hand-written activation (``x * torch.sigmoid(x)``) is still counted op by op.
"""

from __future__ import annotations

from pytest_flopbudget.counting.formulas import per_output_element


activation = per_output_element  # one operation per output element


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

# Composite activations counted as one unit (the counter mutes the aten ops they lower to).
FUNCTION_RULES = {
    "torch.nn.functional.softsign": ("F.softsign", activation),
    "torch.nn.functional.tanhshrink": ("F.tanhshrink", activation),
    "torch.nn.functional.softmin": ("F.softmin", activation),
}


# Variants of the activations above (issue 21): the functional form of rrelu's in-place noise,
# the masked and nested softmax kernels, the out= forms of softmax (whose functional form is a
# composite), and glu's forward-mode derivatives: one per output element, like their twins.
RULES.update({
    name: activation
    for name in (
        "rrelu_with_noise_functional", "_masked_softmax", "_masked_softmax_backward",
        "_nested_tensor_softmax_with_shape", "softmax.int_out", "log_softmax.int_out", "glu_jvp",
        "glu_backward_jvp",
    )
})
