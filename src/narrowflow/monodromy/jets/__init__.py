"""Higher-order variational equations: k-jets of flow maps along complex paths (docs/math.md §5.6).

The k-jet of the flow map ``φ_γ`` of ``dy/dt = F(y)`` along a path ``γ`` of complex
times (or, in *Koenigs mode*, of ``dy/dz = F(y) / (c z)`` along a path of the
z-plane) is the list of derivative tensors ``Φ_j = ∂^j φ_γ / ∂y0^j``, ``j = 0..k``
(``Φ_0`` the end point, ``Φ_1`` the monodromy matrix, ``Φ_j`` of shape ``(n,)*(j+1)``,
symmetric in its last ``j`` indices). They satisfy the higher-order variational
equations VE_j, obtained by differentiating ``Φ̇_0 = F(Φ_0)`` with Faà di Bruno's formula:

    Φ̇_1 = DF Φ_1
    Φ̇_2 = DF Φ_2 + D²F(Φ_1, Φ_1)
    Φ̇_3 = DF Φ_3 + 3 D²F(Φ_2, Φ_1) + D³F(Φ_1, Φ_1, Φ_1)       (symmetrised)
    Φ̇_4 = ...                                                     (up to order 4)

all integrated jointly, in complex arithmetic, by the package's one path integrator
(:mod:`narrowflow.monodromy.pathint`, DOP853 on the real parameter of each piece):
``dY/dz = F(Y)`` (time) or ``F(Y) / (c z)`` (Koenigs).

The derivative tensors of ``F`` come from a Numba function with the signature

    derivs(y: complex128[:], params: float64[:], order: int,
           F (n,), DF (n,n), D2F (n,n,n), D3F (n,)*4, D4F (n,)*5) -> None

that fills the arrays up to ``order`` (built in: Hénon–Heiles,
:func:`narrowflow.monodromy.fields.henon_heiles_derivs`; networks, in
:mod:`narrowflow.derivatives`).

Jets of loops are verified like monodromy matrices, by the same rules
(:mod:`narrowflow.monodromy.verify`): computed at two tolerances (the difference is the
error estimate), the base point's closure defect at both (it must be small and shrink with
the tolerance), and on a deformed copy of the loop. Commutators of loop jets are
**integrated along the commutator loop** (``γ1 γ2 γ1⁻¹ γ2⁻¹``), never composed from float64 jets: jets with entries of size
1e4..1e9 lose every digit of a small order-3 part to round-off when composed.

The *order-j part* of a jet is its derivative tensor ``Φ_j`` (the homogeneous Taylor
term is ``Φ_j(δ, ..., δ) / j!``); norms are Frobenius norms of these full (symmetric)
tensors, the convention of docs/math.md §5.6; ``deviation(1)`` is ``‖Φ_1 − I‖``.

The package's files, one job each: ``kernel`` (Faà di Bruno's chain rule, the jet
right-hand side), ``system`` (fields, one transport), ``algebra`` (composition, inversion,
norms), ``loops`` (verified loop jets), ``commutator`` (commutators and their verdict).
"""
from __future__ import annotations

from ..fields import henon_heiles_derivs
from ..verify import Deviation, JetVerdict
from .algebra import _order_norms, compose, inverse
from .commutator import (NO_CONCLUSION, NON_ABELIAN, JetCommutator, _one_jet_group,
                         henon_heiles_period_jets, jet_commutator)
from .kernel import MAX_ORDER
from .loops import Jet, _unipotent, jet_monodromy
from .system import (JetSystem, _check_order, _concat, _network_jet_system, _parse_system,
                     henon_heiles_system, transport_jet)

__all__ = [
    "JetSystem", "Jet", "JetCommutator", "JetVerdict", "Deviation", "jet_monodromy",
    "jet_commutator", "transport_jet", "henon_heiles_system", "henon_heiles_derivs",
    "henon_heiles_period_jets", "compose", "inverse", "MAX_ORDER",
]
