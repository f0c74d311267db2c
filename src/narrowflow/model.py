"""Networks, data sets and their gradient flows (docs/math.md §1–4).

numpy reference implementations of the loss, gradient and Hessian, for real
and complex parameter vectors; the parameter layout; the invariant subspaces.
Nothing here knows about integrators.

Parameter layout (neuron-major): block j is (a_j[0..k-1], w_j[0..d-1], b_j),
b_j only with biases, then c[0..k-1] only with biases. NF4 is θ = [a1, w1, a2, w2].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from narrowflow import activations as _act
from narrowflow import initial as _initial


# Upper bounds on the architecture, checked before anything is built or allocated.
# The right-hand sides (narrowflow.rhs) are generated and compiled per architecture (d, m, k),
# with code size and compile time growing with m (d + k); the dense p x p Hessian and
# variational matrices (analysis, monodromy, Rosenbrock solvers) take 8 p^2 bytes each, 128 MiB
# at p = 4096 per matrix (per trajectory for the variational equation). A "narrow" network
# lives far below these; beyond them an ensemble of ODEs in parameter space is the wrong tool,
# and without them width = 10**7 was accepted and input_dim = 10**5 ended in a RecursionError
# inside code generation.
MAX_WIDTH = 1024            # m: hidden units
MAX_INPUT_DIM = 1024        # d
MAX_OUTPUT_DIM = 1024       # k
MAX_PARAMS = 4096           # p = m (k + d + bias) + k bias


def _positive_int(value, name: str, upper: int | None = None) -> int:
    """An integer in [1, upper]: TypeError for a non-integer, ValueError (naming `name`) out
    of range; a real number beyond `upper` (e.g. 1e7) is a ValueError too."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if upper is not None and isinstance(value, (int, float, np.integer, np.floating)) \
            and not (value <= upper):          # also inf and nan
        raise ValueError(f"{name} must be <= {upper}, got {value!r}")
    if not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


@dataclass(frozen=True)
class Parameters:
    """A parameter vector split into its parts (views into θ where possible).

    Parameters
    ----------
    a : ndarray, shape (m, k)
        Output weights.
    w : ndarray, shape (m, d)
        Input weights.
    b : ndarray, shape (m,), or None
        Hidden biases (None without biases).
    c : ndarray, shape (k,), or None
        Output bias (None without biases).
    """

    a: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    c: np.ndarray | None


class Network:
    """A two-layer network ``f(x; θ) = Σ_j a_j σ(w_j·x + b_j) + c`` with m hidden units.

    The parameter vector θ is neuron-major (docs/math.md §1): block j is
    ``(a_j[0..k-1], w_j[0..d-1], b_j)``, ``b_j`` only with biases, then ``c[0..k-1]`` only
    with biases.

    Parameters
    ----------
    width : int, optional
        Hidden units m, ``1 <= m <= MAX_WIDTH`` (1024).
    input_dim : int, optional
        Input dimension d, ``1 <= d <= MAX_INPUT_DIM`` (1024).
    output_dim : int, optional
        Output dimension k, ``1 <= k <= MAX_OUTPUT_DIM`` (1024).
    activation : str or Activation, optional
        A name from ``narrowflow.activations.NAMES`` or an ``Activation``.
    bias : bool, optional
        Include the biases ``b_j`` and ``c``.
    kappa : float, optional
        The quadratic activation's parameter.

    Raises
    ------
    TypeError, ValueError
        For a bad argument (named), or when ``p = m (k + d + bias) + k bias`` exceeds
        ``MAX_PARAMS`` (4096).

    Notes
    -----
    The bounds exist because the right-hand sides are generated and compiled per
    architecture, at a cost growing with m (d + k), and the dense p x p Hessian and
    variational matrices take 8 p^2 bytes each (128 MiB at p = 4096); narrow networks, this
    package's subject, are far below.
    """

    def __init__(self, width=2, input_dim=1, output_dim=1, activation="tanh", bias=False,
                 kappa=None):
        self.width = _positive_int(width, "width", MAX_WIDTH)
        self.input_dim = _positive_int(input_dim, "input_dim", MAX_INPUT_DIM)
        self.output_dim = _positive_int(output_dim, "output_dim", MAX_OUTPUT_DIM)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        self.bias = bool(bias)
        if self.n_params > MAX_PARAMS:
            raise ValueError(
                f"the network would have {self.n_params} parameters (width * (output_dim + "
                f"input_dim{' + 1' if self.bias else ''}){' + output_dim' if self.bias else ''}"
                f" with width={self.width}, input_dim={self.input_dim}, output_dim="
                f"{self.output_dim}), more than {MAX_PARAMS}: reduce width or input_dim")
        self.activation = _act.get(activation, kappa=kappa)

    @property
    def block_size(self) -> int:
        """Entries per neuron block: k + d (+1 with bias)."""
        return self.output_dim + self.input_dim + int(self.bias)

    @property
    def n_params(self) -> int:
        """p = m (k + d + bias) + k bias."""
        return self.width * self.block_size + (self.output_dim if self.bias else 0)

    @property
    def architecture(self) -> tuple:
        """(d, m, k, bias): what fixes the compiled code's loop bounds."""
        return (self.input_dim, self.width, self.output_dim, self.bias)

    def __repr__(self) -> str:
        kap = f", kappa={self.activation.kappa}" if self.activation.name == "quadratic" else ""
        return (f"Network(width={self.width}, input_dim={self.input_dim}, "
                f"output_dim={self.output_dim}, activation={self.activation.name!r}, "
                f"bias={self.bias}{kap})")

    def describe(self) -> dict:
        """Plain-data description, for configs, file attributes and rebuilding.

        Returns
        -------
        dict
            ``width``, ``input_dim``, ``output_dim``, ``activation`` (name), ``kappa``,
            ``bias``: the arguments of `Network`.
        """
        return dict(width=self.width, input_dim=self.input_dim, output_dim=self.output_dim,
                    activation=self.activation.name, kappa=self.activation.kappa,
                    bias=self.bias)

    # --- layout ---------------------------------------------------------------------

    def check_theta(self, theta, name: str = "theta") -> np.ndarray:
        """Check a parameter vector and return it as float64 or complex128.

        Parameters
        ----------
        theta : array_like of numbers, shape (p,)
            The parameter vector.
        name : str, optional
            The name used in error messages.

        Returns
        -------
        ndarray of float64 or complex128, shape (p,)
            ``theta`` (complex128 when it is complex).

        Raises
        ------
        TypeError
            If ``theta`` is not numeric.
        ValueError
            If its shape is not ``(p,)``.
        """
        arr = np.asarray(theta)
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
        if arr.ndim != 1 or arr.shape[0] != self.n_params:
            raise ValueError(f"{name} must have shape ({self.n_params},) for {self!r}, "
                             f"got {arr.shape}")
        return arr.astype(np.complex128 if arr.dtype.kind == "c" else np.float64, copy=False)

    def unpack(self, theta) -> Parameters:
        """Split θ into its parts.

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.

        Returns
        -------
        Parameters
            ``a`` (m, k), ``w`` (m, d), ``b`` (m,) or None, ``c`` (k,) or None.
        """
        th = self.check_theta(theta)
        m, d, k = self.width, self.input_dim, self.output_dim
        blocks = th[: m * self.block_size].reshape(m, self.block_size)
        return Parameters(a=blocks[:, :k], w=blocks[:, k:k + d],
                          b=blocks[:, k + d] if self.bias else None,
                          c=th[m * self.block_size:] if self.bias else None)

    def pack(self, a, w, b=None, c=None) -> np.ndarray:
        """Assemble θ from its parts (the inverse of `unpack`).

        Parameters
        ----------
        a : array_like, shape (m, k), or (m,) when k = 1
            Output weights.
        w : array_like, shape (m, d), or (m,) when d = 1
            Input weights.
        b : array_like, shape (m,), optional
            Hidden biases; required with ``bias=True``, refused without.
        c : array_like, shape (k,), optional
            Output bias; required with ``bias=True``, refused without.

        Returns
        -------
        ndarray, shape (p,)
            θ, float64 or the common (e.g. complex) type of the parts.

        Raises
        ------
        ValueError
            For a part of the wrong size, or biases given or missing against ``bias``.
        """
        m, d, k = self.width, self.input_dim, self.output_dim
        a = np.asarray(a)
        w = np.asarray(w)
        dtype = np.result_type(a, w, *(x for x in (b, c) if x is not None), np.float64)
        a = a.reshape(m, k) if a.size == m * k else None
        if a is None:
            raise ValueError(f"a must have {m * k} entries (shape ({m}, {k}))")
        if w.size != m * d:
            raise ValueError(f"w must have {m * d} entries (shape ({m}, {d}))")
        w = w.reshape(m, d)
        if self.bias:
            if b is None or c is None:
                raise ValueError("b and c are required for a network with bias=True")
            b = np.asarray(b).reshape(-1)
            c = np.asarray(c).reshape(-1)
            if b.size != m:
                raise ValueError(f"b must have {m} entries, got {b.size}")
            if c.size != k:
                raise ValueError(f"c must have {k} entries, got {c.size}")
            blocks = np.concatenate([a, w, b[:, None]], axis=1)
            return np.concatenate([blocks.reshape(-1), c]).astype(dtype)
        if b is not None or c is not None:
            raise ValueError("b and c must be None for a network with bias=False")
        return np.concatenate([a, w], axis=1).reshape(-1).astype(dtype)

    def block_indices(self, j: int) -> np.ndarray:
        """Indices in θ of neuron j's block ``(a_j, w_j, b_j)``.

        Parameters
        ----------
        j : int
            Neuron index, ``0 <= j < m``.

        Returns
        -------
        ndarray of int, shape (k + d + bias,)
            Consecutive indices.
        """
        if not 0 <= j < self.width:
            raise ValueError(f"neuron index must be in 0..{self.width - 1}, got {j}")
        return np.arange(j * self.block_size, (j + 1) * self.block_size)

    def parameter_names(self) -> list[str]:
        """Names of θ's entries.

        Returns
        -------
        list of str, length p
            ``a1, w1, (b1), a2, ..., (c)``, with suffixes ``_i`` when d or k > 1.
        """
        names = []
        for j in range(1, self.width + 1):
            names += [f"a{j}" if self.output_dim == 1 else f"a{j}_{q + 1}"
                      for q in range(self.output_dim)]
            names += [f"w{j}" if self.input_dim == 1 else f"w{j}_{i + 1}"
                      for i in range(self.input_dim)]
            if self.bias:
                names.append(f"b{j}")
        if self.bias:
            names += ["c" if self.output_dim == 1 else f"c{q + 1}" for q in range(self.output_dim)]
        return names

    # --- evaluation -----------------------------------------------------------------

    def preactivations(self, theta, x) -> np.ndarray:
        """Pre-activations ``z_ij = w_j·x_i + b_j``.

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.
        x : array_like, shape (n, d)
            Inputs.

        Returns
        -------
        ndarray, shape (n, m)
        """
        P = self.unpack(theta)
        z = np.asarray(x) @ P.w.T
        return z + P.b if self.bias else z

    def forward(self, theta, x) -> np.ndarray:
        """The network's output ``f(x; θ)``.

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.
        x : array_like of real, shape (n, d), or (n,) when d = 1
            Inputs.

        Returns
        -------
        ndarray, shape (n, k)
        """
        x = _as_2d(x, "x", self.input_dim)
        P = self.unpack(theta)
        z = x @ P.w.T + (P.b if self.bias else 0.0)
        out = self.activation.d(z, 0) @ P.a
        return out + P.c if self.bias else out


def _as_2d(arr, name: str, width: int | None = None) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {np.shape(arr)}")
    if width is not None and a.shape[1] != width:
        raise ValueError(f"{name} must have {width} column(s), got shape {a.shape}")
    return a


class Dataset:
    """Training pairs ``(x_i, y_i)``, stored read-only as float64.

    Parameters
    ----------
    x : array_like of real, shape (n, d), or (n,) for d = 1
        Inputs, finite, n >= 1.
    y : array_like of real, shape (n, k), or (n,) for k = 1
        Targets, finite.

    Raises
    ------
    TypeError, ValueError
        For non-real, non-finite, empty or mismatched arrays (named).
    """

    def __init__(self, x, y):
        x2 = _as_2d(x, "x")
        y2 = _as_2d(y, "y")
        if x2.shape[0] == 0:
            raise ValueError("x must hold at least one data point")
        if x2.shape[0] != y2.shape[0]:
            raise ValueError(f"x and y must have the same number of rows, got {x2.shape[0]} "
                             f"and {y2.shape[0]}")
        for name, arr in (("x", x2), ("y", y2)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contains NaN or infinite values")
        self.x = x2
        self.y = y2
        self.x.setflags(write=False)
        self.y.setflags(write=False)

    @property
    def n(self) -> int:
        """Number of data points n."""
        return self.x.shape[0]

    @property
    def input_dim(self) -> int:
        """Input dimension d."""
        return self.x.shape[1]

    @property
    def output_dim(self) -> int:
        """Output dimension k."""
        return self.y.shape[1]

    def __repr__(self) -> str:
        return f"Dataset(n={self.n}, input_dim={self.input_dim}, output_dim={self.output_dim})"

    @classmethod
    def from_teacher(cls, net: Network, theta, x) -> "Dataset":
        """A data set labelled by a teacher network, ``y = f(x; θ_teacher)``.

        Parameters
        ----------
        net : Network
            The teacher's architecture.
        theta : array_like of real, shape (p,)
            The teacher's parameters (complex is refused, not cast to its real part).
        x : array_like of real, shape (n, d), or (n,) when d = 1
            Inputs.

        Returns
        -------
        Dataset
        """
        x2 = _as_2d(x, "x", net.input_dim)
        if np.iscomplexobj(theta) or np.asarray(theta).dtype.kind not in "biuf":
            raise TypeError(f"theta must be a real array (complex data is refused, not cast), "
                            f"got dtype {np.asarray(theta).dtype}")
        return cls(x2, net.forward(net.check_theta(theta, "theta"), x2))


class GradientFlow:
    """The gradient flow ``θ' = −∇L(θ)`` of a network on a data set (docs/math.md §1–3).

    ``L(θ) = (1/2n) Σ_i ‖f(x_i; θ) − y_i‖² + (λ/2)‖θ‖²``. All methods take θ of shape
    (p,), real or complex: complex θ is the analytic continuation (no complex conjugation
    anywhere, so complex results are holomorphic in θ).

    Parameters
    ----------
    network : Network
        The architecture.
    data : Dataset
        The training data (its dimensions must match the network's).
    weight_decay : float, optional
        λ >= 0, finite.

    Raises
    ------
    TypeError, ValueError
        For a bad argument (named).
    """

    def __init__(self, network: Network, data: Dataset, weight_decay: float = 0.0):
        if not isinstance(network, Network):
            raise TypeError(f"network must be a Network, got {type(network).__name__}")
        if not isinstance(data, Dataset):
            raise TypeError(f"data must be a Dataset, got {type(data).__name__}")
        if data.input_dim != network.input_dim:
            raise ValueError(f"data has input_dim {data.input_dim} but the network expects "
                             f"{network.input_dim}")
        if data.output_dim != network.output_dim:
            raise ValueError(f"data has output_dim {data.output_dim} but the network expects "
                             f"{network.output_dim}")
        real = (int, float, np.integer, np.floating)
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, real):
            raise TypeError(f"weight_decay must be a real number, got {weight_decay!r}")
        lam = float(weight_decay)
        if not np.isfinite(lam) or lam < 0:
            raise ValueError(f"weight_decay must be finite and >= 0, got {weight_decay!r}")
        self.network = network
        self.data = data
        self.weight_decay = lam

    def __repr__(self) -> str:
        return f"GradientFlow({self.network!r}, {self.data!r}, weight_decay={self.weight_decay})"

    @property
    def n_params(self) -> int:
        """Number of parameters p."""
        return self.network.n_params

    # --- shared pieces --------------------------------------------------------------

    def _parts(self, theta):
        net = self.network
        th = net.check_theta(theta)
        P = net.unpack(th)
        z = self.data.x @ P.w.T
        if net.bias:
            z = z + P.b
        s = net.activation.derivatives(z)           # 5 arrays (n, m)
        f = s[0] @ P.a
        if net.bias:
            f = f + P.c
        r = f - self.data.y                          # (n, k)
        return th, P, s, r

    def residuals(self, theta) -> np.ndarray:
        """Residuals ``r_i = f(x_i; θ) − y_i``.

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.

        Returns
        -------
        ndarray, shape (n, k)
        """
        return self._parts(theta)[3]

    def loss(self, theta):
        """The loss L(θ).

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.

        Returns
        -------
        float or complex
            A scalar (complex for complex θ).
        """
        th, _, _, r = self._parts(theta)
        return 0.5 * np.sum(r * r) / self.data.n + 0.5 * self.weight_decay * np.sum(th * th)

    def grad(self, theta) -> np.ndarray:
        """The gradient ∇L(θ).

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.

        Returns
        -------
        ndarray, shape (p,)
        """
        th, P, s, r = self._parts(theta)
        net, n, x = self.network, self.data.n, self.data.x
        rho = r @ P.a.T                              # (n, m): ρ_ij = r_i · a_j
        g_a = s[0].T @ r / n                         # (m, k)
        rs1 = rho * s[1]                             # (n, m)
        g_w = rs1.T @ x / n                          # (m, d)
        parts = [g_a, g_w]
        if net.bias:
            parts.append(rs1.sum(axis=0)[:, None] / n)
        g = np.concatenate(parts, axis=1).reshape(-1)
        if net.bias:
            g = np.concatenate([g, r.sum(axis=0) / n])
        return g + self.weight_decay * th

    def field(self, theta) -> np.ndarray:
        """The gradient-flow vector field ``F(θ) = −∇L(θ)``.

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.

        Returns
        -------
        ndarray, shape (p,)
        """
        return -self.grad(theta)

    def output_jacobian(self, theta) -> np.ndarray:
        """The network's Jacobian ``J_i = ∂f(x_i; θ)/∂θ`` at every data point.

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.

        Returns
        -------
        ndarray, shape (n, k, p)
        """
        th, P, s, _ = self._parts(theta)
        return self._output_jacobian(P, s, th.dtype)

    def _output_jacobian(self, P, s, dtype):
        net, x = self.network, self.data.x
        n, m, d, k, bs = self.data.n, net.width, net.input_dim, net.output_dim, net.block_size
        J = np.zeros((n, k, net.n_params), dtype=dtype)
        eye_k = np.eye(k)
        for j in range(m):
            o = j * bs
            J[:, :, o:o + k] = s[0][:, j, None, None] * eye_k                   # ∂f_κ/∂a_jκ'
            as1 = P.a[j][None, :] * s[1][:, j, None]                           # (n, k)
            J[:, :, o + k:o + k + d] = as1[:, :, None] * x[:, None, :]          # ∂f/∂w_j
            if net.bias:
                J[:, :, o + k + d] = as1                                       # ∂f/∂b_j
        if net.bias:
            J[:, :, m * bs:] = eye_k
        return J

    def hessian(self, theta) -> np.ndarray:
        """The Hessian ∇²L(θ) (docs/math.md §2).

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.

        Returns
        -------
        ndarray, shape (p, p)
            Symmetric (complex symmetric for complex θ).
        """
        th, P, s, r = self._parts(theta)
        net, n, x = self.network, self.data.n, self.data.x
        m, d, k, bs = net.width, net.input_dim, net.output_dim, net.block_size
        J = self._output_jacobian(P, s, th.dtype)
        H = np.einsum("ikp,ikq->pq", J, J) / n
        rho = r @ P.a.T                                                        # (n, m)
        for j in range(m):
            o = j * bs
            ia = slice(o, o + k)
            iw = slice(o + k, o + k + d)
            # ∂²f_κ/∂a_jκ ∂w_j = s' x, weighted by r_iκ
            Haw = (r * s[1][:, j, None]).T @ x / n                             # (k, d)
            H[ia, iw] += Haw
            H[iw, ia] += Haw.T
            # a_jκ s'' x xᵀ weighted by r_iκ, summed over κ: ρ_ij s''_ij x xᵀ
            rs2 = rho[:, j] * s[2][:, j]                                      # (n,)
            H[iw, iw] += (x * rs2[:, None]).T @ x / n
            if net.bias:
                ib = o + k + d
                Hab = (r * s[1][:, j, None]).sum(axis=0) / n                   # (k,)
                H[ia, ib] += Hab
                H[ib, ia] += Hab
                Hwb = (x * rs2[:, None]).sum(axis=0) / n                       # (d,)
                H[iw, ib] += Hwb
                H[ib, iw] += Hwb
                H[ib, ib] += rs2.sum() / n
        return H + self.weight_decay * np.eye(net.n_params)

    def jacobian(self, theta) -> np.ndarray:
        """The Jacobian of the vector field, ``DF = −∇²L``; the VE is ``Φ' = DF Φ``.

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.

        Returns
        -------
        ndarray, shape (p, p)
        """
        return -self.hessian(theta)


# --- invariant subspaces (docs/math.md §4) ------------------------------------------------

class InvariantSubspace:
    """A linear subspace S of parameter space that the gradient flow leaves invariant.

    ``S = {θ : Nᵀθ = 0}`` where N is `normal_basis`, which subclasses give (docs/math.md §4).

    Parameters
    ----------
    network : Network
        The network whose parameter space holds S.
    """

    def __init__(self, network: Network):
        if not isinstance(network, Network):
            raise TypeError(f"network must be a Network, got {type(network).__name__}")
        self.network = network

    def normal_basis(self) -> np.ndarray:  # pragma: no cover - abstract
        """Orthonormal columns spanning the orthogonal complement of S.

        Returns
        -------
        ndarray of float64, shape (p, q)
        """
        raise NotImplementedError

    def tangent_basis(self) -> np.ndarray:
        """Orthonormal columns spanning S.

        Returns
        -------
        ndarray of float64, shape (p, p − q)
        """
        N = self.normal_basis()
        q, _ = np.linalg.qr(np.concatenate([N, np.eye(N.shape[0])], axis=1))
        return q[:, N.shape[1]:N.shape[0]]

    def project(self, theta) -> np.ndarray:
        """The orthogonal projection of θ onto S.

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.

        Returns
        -------
        ndarray, shape (p,)
            A point on S.
        """
        th = self.network.check_theta(theta)
        N = self.normal_basis()
        return th - N @ (N.T @ th)

    def distance(self, theta) -> float:
        """The Euclidean distance ``‖Nᵀθ‖`` from θ to S.

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.

        Returns
        -------
        float
        """
        th = self.network.check_theta(theta)
        return float(np.linalg.norm(self.normal_basis().T @ th))

    def contains(self, theta, tol: float = 1e-12) -> bool:
        """Whether θ lies on S.

        Parameters
        ----------
        theta : array_like of float or complex, shape (p,)
            The parameter vector.
        tol : float, optional
            Absolute tolerance on the Euclidean distance.

        Returns
        -------
        bool
            ``distance(theta) <= tol``.
        """
        return self.distance(theta) <= tol

    def _check_neuron(self, j, name):
        if isinstance(j, bool) or not isinstance(j, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {type(j).__name__}")
        if not 0 <= j < self.network.width:
            raise ValueError(f"{name} must be in 0..{self.network.width - 1}, got {j}")
        return int(j)


class DeadNeuron(InvariantSubspace):
    """The dead-neuron plane ``{a_j = 0, w_j = 0, b_j = 0}``, invariant when σ(0) = 0.

    Parameters
    ----------
    network : Network
        The network; its activation must vanish at 0.
    j : int, optional
        The dead neuron, ``0 <= j < m``.

    Raises
    ------
    ValueError
        If σ(0) ≠ 0 or ``j`` is out of range.
    """

    def __init__(self, network: Network, j: int = 0):
        super().__init__(network)
        self.j = self._check_neuron(j, "j")
        if not network.activation.zero_at_zero:
            raise ValueError(f"the dead-neuron plane is invariant only when σ(0) = 0; "
                             f"{network.activation.name!r} has σ(0) ≠ 0")

    def normal_basis(self) -> np.ndarray:
        """The unit vectors of neuron j's block.

        Returns
        -------
        ndarray of float64, shape (p, k + d + bias)
        """
        return np.eye(self.network.n_params)[:, self.network.block_indices(self.j)]


class Twin(InvariantSubspace):
    """The twin plane ``{block_j = block_l}``, invariant for every activation (permutation symmetry).

    Parameters
    ----------
    network : Network
        The network.
    j, l : int, optional
        Two different neurons.

    Raises
    ------
    ValueError
        If ``j == l`` or either is out of range.
    """

    _sign = 1.0

    def __init__(self, network: Network, j: int = 0, l: int = 1):
        super().__init__(network)
        self.j = self._check_neuron(j, "j")
        self.l = self._check_neuron(l, "l")
        if self.j == self.l:
            raise ValueError("j and l must be different neurons")

    def normal_basis(self) -> np.ndarray:
        """Columns ``(e_{j,i} − sign·e_{l,i})/√2`` for each entry i of a block.

        ``sign`` is +1 for `Twin`, −1 for `MirrorTwin`.

        Returns
        -------
        ndarray of float64, shape (p, k + d + bias)
        """
        net = self.network
        bj, bl = net.block_indices(self.j), net.block_indices(self.l)
        N = np.zeros((net.n_params, net.block_size))
        N[bj, np.arange(net.block_size)] = 1.0 / np.sqrt(2.0)
        N[bl, np.arange(net.block_size)] = -self._sign / np.sqrt(2.0)
        return N


class MirrorTwin(Twin):
    """The mirror-twin plane ``{block_j = −block_l}``, invariant when σ is odd.

    Parameters
    ----------
    network : Network
        The network; its activation must be odd.
    j, l : int, optional
        Two different neurons.

    Raises
    ------
    ValueError
        If σ is not odd, ``j == l`` or either is out of range.
    """

    _sign = -1.0

    def __init__(self, network: Network, j: int = 0, l: int = 1):
        super().__init__(network, j, l)
        if not network.activation.odd:
            raise ValueError(f"the mirror-twin plane is invariant only for odd σ; "
                             f"{network.activation.name!r} is not odd")


# --- the benchmark problem (docs/design.md §6) ------------------------------------------------
# NF4: a width-2 tanh network without biases learns the 16 points x = linspace(−2, 2, 16) of a
# teacher of the same architecture, f*(x) = 1.0 tanh(1.5x) − 0.7 tanh(0.4x). The one definition:
# config's "nf4" preset, the CLI, the tests and the benchmarks take it from here.

NF4_SEED = _initial.DEFAULT_SEED
NF4_ACTIVATION = "tanh"
NF4_TEACHER = np.array([1.0, 1.5, -0.7, 0.4])   # θ* = [a1, w1, a2, w2], float64 (4,)
NF4_N_DATA = 16


def nf4_dataset() -> Dataset:
    """NF4's data set (docs/design.md §6).

    Returns
    -------
    Dataset
        ``x = linspace(−2, 2, 16)``, ``y = 1.0 tanh(1.5x) − 0.7 tanh(0.4x)``, both (16, 1).
    """
    x = np.linspace(-2.0, 2.0, NF4_N_DATA)
    a1, w1, a2, w2 = NF4_TEACHER
    # written out (not through a Network) so that y is exactly tanh(1.5x) − 0.7 tanh(0.4x)
    return Dataset(x, a1 * np.tanh(w1 * x) + a2 * np.tanh(w2 * x))


def nf4_benchmark(activation: str = NF4_ACTIVATION) -> GradientFlow:
    """The NF4 problem of docs/design.md §6: a width-2 network (no biases) on `nf4_dataset`.

    Its initial states are `nf4_initial_states`.

    Parameters
    ----------
    activation : str, optional
        The activation's name.

    Returns
    -------
    GradientFlow
        Without weight decay; ``θ = [a1, w1, a2, w2]``.
    """
    return GradientFlow(Network(width=2, activation=activation), nf4_dataset())


def nf4_initial_states(n: int, seed: int = NF4_SEED, start: int = 0) -> np.ndarray:
    """Initial states ``θ0 ~ N(0, 1)`` of NF4 for trajectories ``start .. start + n − 1``.

    The same states as ``narrowflow run`` and the Dask backend draw for this seed: row i is
    row i of ``narrowflow.initial.sample(n, 4, seed, start=start)``, a function of
    ``(seed, start + i)`` only.

    Parameters
    ----------
    n : int
        Number of trajectories.
    seed : int, optional
        The seed (``narrowflow run``'s default).
    start : int, optional
        Index of the first trajectory.

    Returns
    -------
    ndarray of float64, shape (n, 4)
    """
    return _initial.sample(n, 4, seed, start=start)
