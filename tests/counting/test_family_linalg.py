"""Linear algebra worked by hand from the textbook counts (Golub & Van Loan; LAPACK working note
41): LU 2n³/3, Cholesky n³/3, Householder QR 2mn² − 2n³/3, a triangular solve n² per right-hand
side; iterative methods by a stated convention and recorded as estimates. MACs are half the flops
of each matrix, rounded up."""

from __future__ import annotations

import pytest
import torch

import pytest_flopbudget as fb
from pytest_flopbudget.counting.formulas import linalg


def halves(flops_per_matrix, batch=1):
    return (batch * flops_per_matrix, batch * -(-flops_per_matrix // 2))


def test_factorizations():
    assert linalg.lu_factor((6, 6), out_shape=None) == halves(144)  # 2·216/3
    assert linalg.lu_factor((2, 6, 3), out_shape=None) == halves(6 * 9 - 9, batch=2)  # m·n² − n³/3 = 45
    assert linalg.cholesky((6, 6), out_shape=None) == halves(72)  # 216/3
    assert linalg.geqrf((6, 3), out_shape=None) == halves(2 * 6 * 9 - 18)  # 2mn² − 2n³/3 = 90
    assert linalg.geqrf((3, 6), out_shape=None) == halves(90)  # the wide case, k = 3
    # householder_product of (6, 3) with 3 reflectors: 4·6·3·3 − 2·9·9 + 4·27/3 = 216 − 162 + 36
    assert linalg.householder_product((6, 3), (3,), out_shape=None) == halves(90)
    # ormqr: 2 reflectors applied from the left to a 5×4 C: 2·4·2·(10 − 2) = 128
    assert linalg.ormqr((5, 2), (2,), (5, 4), True, out_shape=None) == halves(128)
    assert linalg.ormqr((4, 2), (2,), (5, 4), False, out_shape=None) == halves(2 * 5 * 2 * (8 - 2))


def test_qr_modes():
    r_only = 2 * 9 * (5 - 1)  # (5, 3): 72
    thin_q = 4 * 5 * 3 * 3 - 2 * 8 * 9 + 4 * 9  # 72
    full_q = 4 * 5 * 5 * 3 - 2 * 10 * 9 + 4 * 9  # 156
    assert linalg.qr((5, 3), "r", out_shape=None) == halves(r_only)
    assert linalg.qr((5, 3), "reduced", out_shape=None) == halves(r_only + thin_q)
    assert linalg.qr((5, 3), "complete", out_shape=None) == halves(r_only + full_q)


def test_solves_and_inverses():
    assert linalg.triangular_solve_left((4, 4), (4, 3), out_shape=None, upper=True) == halves(48)
    assert linalg.triangular_solve_left((4, 4), (2, 4), out_shape=None, upper=True, left=False) == halves(32)
    assert linalg.triangular_solve_legacy((4, 3), (4, 4), out_shape=None) == halves(48)
    # solve: LU of 4×4 (128/3 -> 43) + 2·16 per right-hand side, 2 of them; batched by B's batch
    assert linalg.solve((4, 4), (5, 4, 2), out_shape=None) == (43 + 5 * 64, 22 + 5 * 32)
    assert linalg.solve_with_factor((4, 4), (4,), (4, 2), out_shape=None) == halves(64)
    assert linalg.cholesky_solve((4, 2), (4, 4), out_shape=None) == halves(64)
    assert linalg.inverse((3, 4, 4), out_shape=None) == halves(128, batch=3)
    assert linalg.cholesky_inverse((6, 6), out_shape=None) == halves(144)
    assert linalg.det((4, 4), out_shape=None) == halves(43 + 4)
    assert linalg.slogdet((4, 4), out_shape=None) == halves(43 + 8)


def test_iterative_methods_are_estimates_by_convention_never_zero():
    assert linalg.eigh((4, 4), "L", True, out_shape=None) == halves(9 * 64)
    assert linalg.eigh((4, 4), "L", False, out_shape=None) == halves(86)  # 4·64/3 = 85.3
    assert linalg.eig((4, 4), out_shape=None) == halves(25 * 64)
    assert linalg.eigvals((4, 4), out_shape=None) == halves(640)
    assert linalg.svd((5, 3), False, True, out_shape=None) == halves(14 * 5 * 9 + 8 * 27)
    assert linalg.svd((3, 5), False, False, out_shape=None) == halves(4 * 5 * 9 - 36)
    assert linalg.matrix_exp((4, 4), out_shape=None) == halves(5 * 16 * 7)
    for formula in (linalg.eigh, linalg.eig, linalg.eigvals, linalg.svd, linalg.matrix_exp, linalg.pinv):
        assert formula.estimated  # recorded in Measurement.estimated
    assert not hasattr(linalg.qr, "estimated")


def test_small_fixed_size_ops():
    assert linalg.cross((5, 3), (5, 3), out_shape=(5, 3)) == (45, 45)
    assert linalg.trace((4, 6), out_shape=()) == (4, 4)


def test_qr_in_a_count_block_end_to_end():
    a = torch.randn(2, 6, 4)
    with fb.count() as m:
        q, r = torch.linalg.qr(a)
        torch.linalg.solve_triangular(r, torch.randn(2, 4, 3), upper=True)
    # per 6×4 matrix: R 2·4²·(6 − 4/3) = 149⅓, thin Q 4·6·4·4 − 2·10·4² + 4·4³/3 = 149⅓: 298⅔ -> 299
    assert m.ops["aten.linalg_qr"] == 2 * 299
    assert m.ops["aten.linalg_solve_triangular"] == 2 * 16 * 3  # n² per right-hand side
    assert m.macs == 2 * 150 + 2 * 24
    assert m.uncounted == {} and m.estimated == {}


def test_eigh_in_a_count_block_is_recorded_as_estimated():
    a = torch.randn(5, 5)
    with fb.count() as m:
        torch.linalg.eigh(a @ a.T)
    assert m.ops["aten._linalg_eigh"] == 9 * 125
    assert "aten._linalg_eigh" in m.estimated and "9n³" in m.estimated["aten._linalg_eigh"]


@pytest.mark.parametrize("fn", [torch.linalg.inv, torch.linalg.det, torch.linalg.cholesky, torch.linalg.eigvals,
                                torch.linalg.matrix_exp, torch.linalg.svdvals, torch.linalg.pinv,
                                lambda a: torch.linalg.lstsq(a, a).solution, lambda a: torch.linalg.lu(a),
                                lambda a: torch.linalg.ldl_factor(a), lambda a: torch.cholesky_inverse(a)])
def test_every_linalg_function_counts_something_on_cpu_and_meta(fn):
    a = torch.randn(4, 4)
    spd = a @ a.T + 4 * torch.eye(4)
    counts = []
    for device in ("cpu", "meta"):
        with fb.count() as m:
            try:
                fn(spd.to(device))
            except NotImplementedError:  # a few linalg kernels have no meta implementation
                continue
        assert m.uncounted == {} and m.flops > 0
        counts.append(m.flops)
    assert len(set(counts)) == 1
