"""Dense linear algebra: factorizations, solves, inverses, determinants, eigen- and singular
value decompositions, the matrix exponential, cross products and traces.

Direct methods are counted by their textbook operation counts (leading terms, as LAPACK's
working notes and Golub & Van Loan, *Matrix Computations*, 4th ed., tabulate them), per matrix,
times the batch (the leading dimensions), each rounded up to an integer per matrix:

    LU (getrf), m×n, k = min, l = max      l·k² − k³/3          (2n³/3 square)      GVL §3.2
    Cholesky (potrf), n×n                  n³/3                                     GVL §4.2
    LDLᵀ (sytrf, Bunch–Kaufman)            n³/3                                     GVL §4.4
    Householder QR (geqrf), k = min        2k²·(l − k/3)        (2mn² − 2n³/3)      GVL §5.2
    forming thin Q (orgqr) from k refl.    4mnk − 2(m+n)k² + 4k³/3                  GVL §5.1.6
    applying Q (ormqr) to C (m×n), left    2nk·(2m − k)   (right: 2mk·(2n − k))     LAWN 41
    triangular solve, per right-hand side  n²                                       GVL §3.1
    solve with a factorization, per rhs    2n²  (two triangular solves)
    inverse (getrf + getri)                2n³                                      GVL §3.4
    inverse from Cholesky (potri)          2n³/3                                    LAWN 41

Iterative methods, whose work depends on the values (how fast the QR iteration converges, how
many squarings the norm asks for), are counted by a stated convention and marked as estimates
(``Measurement.estimated``): the GVL §8 / §7.5 table of the Golub–Reinsch SVD and the
symmetric and unsymmetric QR algorithms (eigh: 4n³/3 values only, 9n³ with vectors; eig: 10n³
values only, 25n³ with vectors; SVD of m×n, m ≥ n: 4mn² − 4n³/3 values only, 14mn² + 8n³ with
thin U and V, 4m²n + 8mn² + 9n³ with full U), and for ``matrix_exp`` the degree-18 Taylor
evaluation torch uses (Bader, Blanes & Casas 2019: 5 matrix products) without squarings.

MACs: ceil(flops / 2): these algorithms' inner loops are multiply–add pairs (axpy and rank-k
updates), the ratio a dot product's count has; ptflops, fvcore and thop count none of them.
"""

from __future__ import annotations

from math import ceil, prod

from pytest_flopbudget.counting.formulas import Cost, Shape, dot_products, estimated, numel, sum_costs


def _batched(shape: Shape, per_matrix: float) -> Cost:
    """``per_matrix`` flops (rounded up) for each matrix of a (..., m, n) batch; macs half of them."""
    flops = ceil(per_matrix)
    batch = prod(shape[:-2])
    return (batch * flops, batch * ceil(flops / 2))


def lu_flops(m: int, n: int) -> float:
    k, l = min(m, n), max(m, n)
    return l * k * k - k ** 3 / 3


def qr_flops(m: int, n: int) -> float:
    k, l = min(m, n), max(m, n)
    return 2 * k * k * (l - k / 3)


def householder_flops(m: int, n: int, k: int) -> float:
    """Forming the m×n Q of k reflectors (backward accumulation)."""
    return 4 * m * n * k - 2 * (m + n) * k * k + 4 * k ** 3 / 3


def _rhs(a: Shape, b: Shape, left: bool = True) -> int:
    """Right-hand sides of ``A X = B`` (left) or ``X A = B`` (right); a vector B is one."""
    if len(b) == 1 or (len(b) == len(a) - 1 and left):
        return 1
    return b[-1] if left else b[-2]


def _solve_batch(a: Shape, b: Shape, per_matrix: float) -> Cost:
    """Solves are batched over the broadcast of A's and B's batch dimensions."""
    return _batched(_broadcast_batch(a, b), per_matrix)


def _broadcast_batch(a: Shape, b: Shape) -> Shape:
    left, right = list(a[:-2]), list(b[:-2]) if len(b) > 2 else []
    size = max(len(left), len(right))
    left, right = [1] * (size - len(left)) + left, [1] * (size - len(right)) + right
    return (*[max(x, y) for x, y in zip(left, right)], 1, 1)


# --- factorizations ---------------------------------------------------------------------------


def lu_factor(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_lu_factor_ex`` / ``linalg_lu``: LU with partial pivoting (unpacking P, L, U is free)."""
    return _batched(a, lu_flops(a[-2], a[-1]))


def cholesky(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_cholesky_ex`` / ``cholesky``, and LDLᵀ (``linalg_ldl_factor_ex``): n³/3."""
    return _batched(a, a[-1] ** 3 / 3)


def qr(a: Shape, mode: str = "reduced", *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_qr(A, mode)``: R by Householder QR; ``"reduced"`` also forms the thin Q (m×k),
    ``"complete"`` the full m×m Q, ``"r"`` none."""
    mode = str(kwargs.get("mode", mode))
    m, n = a[-2], a[-1]
    k = min(m, n)
    total = qr_flops(m, n)
    if mode == "reduced":
        total += householder_flops(m, k, k)
    elif mode == "complete":
        total += householder_flops(m, m, k)
    return _batched(a, total)


def geqrf(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``geqrf``: the Householder factorization alone (R and the reflectors)."""
    return _batched(a, qr_flops(a[-2], a[-1]))


def householder_product(a: Shape, tau: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_householder_product(A (m×n), tau (k))``: the m×n Q of k reflectors."""
    return _batched(a, householder_flops(a[-2], a[-1], tau[-1]))


def ormqr(a: Shape, tau: Shape, c: Shape, left: bool = True, *args: object, out_shape: object = None,
          **kwargs: object) -> Cost:
    """``ormqr(A, tau, C, left, transpose)``: k reflectors applied to C (m×n)."""
    left = bool(kwargs.get("left", left))
    m, n, k = c[-2], c[-1], tau[-1]
    per_matrix = 2 * n * k * (2 * m - k) if left else 2 * m * k * (2 * n - k)
    return _batched(c, per_matrix)


# --- solves and inverses ----------------------------------------------------------------------


def triangular_solve_left(a: Shape, b: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_solve_triangular(A, B, *, upper, left, unitriangular)``: n² per right-hand side."""
    left = bool(kwargs.get("left", True))
    n = a[-1]
    return _solve_batch(a, b, n * n * _rhs(a, b, left))


def triangular_solve_legacy(b: Shape, a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``triangular_solve(B, A, upper, transpose, unitriangular)``: the legacy argument order."""
    n = a[-1]
    return _solve_batch(a, b, n * n * _rhs(a, b))


def solve(a: Shape, b: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``_linalg_solve_ex(A, B, *, left)``: LU of A, then 2n² per right-hand side."""
    n = a[-1]
    left = bool(kwargs.get("left", True))
    return sum_costs(_batched(a, lu_flops(n, n)), _solve_batch(a, b, 2 * n * n * _rhs(a, b, left)))


def solve_with_factor(factor: Shape, pivots: Shape, b: Shape, *args: object, out_shape: object = None,
                      **kwargs: object) -> Cost:
    """``linalg_lu_solve(LU, pivots, B)`` and ``linalg_ldl_solve(LD, pivots, B)``: 2n² per right-hand side."""
    n = factor[-1]
    left = bool(kwargs.get("left", True))
    return _solve_batch(factor, b, 2 * n * n * _rhs(factor, b, left))


def cholesky_solve(b: Shape, factor: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``cholesky_solve(B, L, upper)`` (and ``_cholesky_solve_helper``): 2n² per right-hand side."""
    n = factor[-1]
    return _solve_batch(factor, b, 2 * n * n * _rhs(factor, b))


def inverse(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_inv_ex``: LU then the inverse from it, 2n³ in all."""
    return _batched(a, 2 * a[-1] ** 3)


def cholesky_inverse(factor: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``cholesky_inverse(L)``: the inverse from a Cholesky factor (potri), 2n³/3."""
    return _batched(factor, 2 * factor[-1] ** 3 / 3)


def det(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``_linalg_det``: LU, then the product of the diagonal (n multiplies, the pivots' sign included)."""
    n = a[-1]
    return _batched(a, lu_flops(n, n) + n)


def slogdet(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``_linalg_slogdet``: LU, then a log and an add per diagonal element."""
    n = a[-1]
    return _batched(a, lu_flops(n, n) + 2 * n)


def lstsq(a: Shape, b: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_lstsq(A (m×n), B)``: QR of A, Qᵀ applied to B, a triangular solve with R."""
    m, n = a[-2], a[-1]
    k = min(m, n)
    rhs = 1 if len(b) == len(a) - 1 else b[-1]
    return _solve_batch(a, b, qr_flops(m, n) + 2 * rhs * k * (2 * m - k) + k * k * rhs)


# --- iterative methods: conventions, marked as estimates ----------------------------------------


@estimated("the symmetric QR algorithm's iterations depend on the values; counted as GVL's 4n³/3 "
           "(eigenvalues) or 9n³ (with eigenvectors)")
def eigh(a: Shape, uplo: str = "L", compute_v: bool = True, *args: object, out_shape: object = None,
         **kwargs: object) -> Cost:
    """``_linalg_eigh(A, UPLO, compute_v)``."""
    n = a[-1]
    vectors = bool(kwargs.get("compute_v", compute_v))
    return _batched(a, 9 * n ** 3 if vectors else 4 * n ** 3 / 3)


@estimated("the unsymmetric QR algorithm's iterations depend on the values; counted as GVL's 10n³ "
           "(eigenvalues) or 25n³ (with eigenvectors)")
def eig(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_eig``: eigenvalues and eigenvectors."""
    return _batched(a, 25 * a[-1] ** 3)


@estimated("the unsymmetric QR algorithm's iterations depend on the values; counted as GVL's 10n³")
def eigvals(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_eigvals`` / ``_linalg_eigvals``: eigenvalues only."""
    return _batched(a, 10 * a[-1] ** 3)


def svd_flops(m: int, n: int, full_matrices: bool, compute_uv: bool) -> float:
    m, n = max(m, n), min(m, n)  # the transpose's SVD, for wide matrices
    if not compute_uv:
        return 4 * m * n * n - 4 * n ** 3 / 3
    if full_matrices:
        return 4 * m * m * n + 8 * m * n * n + 9 * n ** 3
    return 14 * m * n * n + 8 * n ** 3


@estimated("the Golub-Kahan-Reinsch SVD's iterations depend on the values; counted as GVL's table "
           "(4mn² − 4n³/3 values only, 14mn² + 8n³ thin, 4m²n + 8mn² + 9n³ full)")
def svd(a: Shape, full_matrices: bool = False, compute_uv: bool = True, *args: object, out_shape: object = None,
        **kwargs: object) -> Cost:
    """``_linalg_svd(A, full_matrices, compute_uv, *, driver)``."""
    full = bool(kwargs.get("full_matrices", full_matrices))
    uv = bool(kwargs.get("compute_uv", compute_uv))
    return _batched(a, svd_flops(a[-2], a[-1], full, uv))


@estimated("the pseudo-inverse runs an SVD (or eigh when hermitian) whose iterations depend on the "
           "values; counted as the thin SVD of GVL's table plus V·Σ⁺·Uᴴ")
def pinv(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_pinv(A, atol, rtol, hermitian)`` with tensor tolerances."""
    m, n = a[-2], a[-1]
    k = min(m, n)
    product = dot_products(m * n, k)[0] + k * n  # scale V's columns, then V·Uᴴ
    return _batched(a, svd_flops(m, n, False, True) + product)


@estimated("the number of squarings depends on the matrix's norm; counted as torch's degree-18 "
           "Taylor evaluation (5 matrix products, Bader, Blanes & Casas 2019) without squarings")
def matrix_exp(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_matrix_exp``."""
    n = a[-1]
    return _batched(a, 5 * dot_products(n * n, n)[0])


@estimated("computed through eigh, whose iterations depend on the values; counted as GVL's 9n³ "
           "with eigenvectors plus V·diag(√λ)·Vᴴ")
def matrix_sqrth(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_matrix_sqrth`` (torch 2.15): the square root of a Hermitian matrix."""
    n = a[-1]
    return _batched(a, 9 * n ** 3 + n * n + dot_products(n * n, n)[0])


@estimated("computed through an SVD, whose iterations depend on the values; counted as the thin SVD "
           "of GVL's table plus U·Vᴴ and H = V·Σ·Vᴴ")
def polar(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_polar`` (torch 2.15): A = U·H."""
    m, n = a[-2], a[-1]
    k = min(m, n)
    products = dot_products(m * n, k)[0] + n * k + dot_products(n * n, k)[0]
    return _batched(a, svd_flops(m, n, False, True) + products)


# --- small fixed-size operations --------------------------------------------------------------


def cross(a: Shape, b: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg_cross``: each output component is a·b − c·d, three per output element."""
    n = 3 * numel(out_shape)  # type: ignore[arg-type]
    return (n, n)


def trace(a: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``trace``: the diagonal's min(m, n) elements summed, one per element like ``sum``."""
    n = min(a[-2], a[-1]) if len(a) >= 2 else 0
    return (n, n)


def linear_combination(x: Shape, coefficients: Shape, *args: object, out_shape: object = None,
                       **kwargs: object) -> Cost:
    """``_compute_linear_combination(input (k, ...), coefficients (m, k))``: each output a dot
    product of k terms."""
    return dot_products(numel(out_shape), coefficients[-1])  # type: ignore[arg-type]


def powsum(x: Shape, *args: object, out_shape: object = None, **kwargs: object) -> Cost:
    """``linalg__powsum``: a power and an add per element, as a vector norm."""
    n = 2 * numel(x)
    return (n, n)


RULES = {
    "linalg_lu_factor_ex": lu_factor,
    "linalg_lu": lu_factor,
    "linalg_cholesky_ex": cholesky,
    "cholesky": cholesky,
    "linalg_ldl_factor_ex": cholesky,
    "linalg_qr": qr,
    "geqrf": geqrf,
    "linalg_householder_product": householder_product,
    "ormqr": ormqr,
    "linalg_solve_triangular": triangular_solve_left,
    "triangular_solve": triangular_solve_legacy,
    "_linalg_solve_ex": solve,
    "linalg_lu_solve": solve_with_factor,
    "linalg_ldl_solve": solve_with_factor,
    "cholesky_solve": cholesky_solve,
    "_cholesky_solve_helper": cholesky_solve,
    "linalg_inv_ex": inverse,
    "cholesky_inverse": cholesky_inverse,
    "_linalg_det": det,
    "_linalg_slogdet": slogdet,
    "linalg_lstsq": lstsq,
    "_linalg_eigh": eigh,
    "linalg_eig": eig,
    "linalg_eigvals": eigvals,
    "_linalg_eigvals": eigvals,
    "_linalg_svd": svd,
    "linalg_pinv": pinv,
    "linalg_matrix_exp": matrix_exp,
    "linalg_matrix_sqrth": matrix_sqrth,
    "linalg_polar": polar,
    "linalg_cross": cross,
    "trace": trace,
    "_compute_linear_combination": linear_combination,
    "linalg__powsum": powsum,
}
