"""Classification of monodromy groups (narrowflow.monodromy.groups) against Kimura's theorem
and explicit matrix groups; verdicts must be able to come out either way."""
from fractions import Fraction as F

import numpy as np
import pytest

import narrowflow.monodromy as mono
from narrowflow.monodromy.groups import (CONSISTENT_ABELIAN, INCONCLUSIVE, NON_ABELIAN,
                                         NON_SOLVABLE, MonodromyGroup, UnverifiedLoopError)


def _classify(a, b, c):
    r0, r1 = mono.hypergeometric_monodromy(a, b, c, results=True)
    return MonodromyGroup([r0, r1], names=["M0", "M1"]).classify()


@pytest.mark.parametrize("name, abc, kind, order", [
    ("generic real", ("3/10", "9/20", "7/10"), "SL2", None),
    ("Legendre", ("1/2", "1/2", "1"), "SL2", None),
    ("reducible a=-1", ("-1", "3/10", "7/10"), "reducible-unipotent", None),
    ("dihedral finite", ("1/10", "-1/10", "1/2"), "imprimitive-finite", 10),
    ("tetrahedral", ("1/4", "-1/12", "1/2"), "finite-primitive", 12),
    ("octahedral", ("5/24", "-1/24", "1/2"), "finite-primitive", 24),
    ("unipotent (commuting)", ("1", "1", "2"), "abelian", None),
])
def test_classifier_agrees_with_kimura(name, abc, kind, order):
    k = mono.kimura_solvable(*abc)
    c = _classify(*abc)
    assert c.kind == kind, str(c)
    assert c.projective_order == order
    assert c.identity_component_solvable is k.solvable
    if k.projective_order is not None:
        assert c.projective_order == k.projective_order
    if kind == "SL2":
        assert c.verdict == NON_SOLVABLE and c.identity_component_abelian is False
    else:
        assert c.verdict == CONSISTENT_ABELIAN and c.identity_component_abelian is True


def test_legendre_generators_are_parabolic_yet_the_group_is_sl2():
    r0, r1 = mono.hypergeometric_monodromy("1/2", "1/2", "1", results=True)
    G = MonodromyGroup([r0, r1])
    for i in range(2):
        t = G.trace(i)
        assert abs(t.value - 2) < 1e-8          # tr = 2 but not the identity
    assert G.commutator_trace().value.real > 1   # tr[A,B] - 2 far from 0: irreducible


def test_dihedral_infinite_and_borel():
    s = 2 ** 0.5 / 5                             # nu irrational: infinite dihedral group
    assert mono.kimura_solvable(s, -s, "1/2").case == "dihedral"
    c = _classify(s, -s, 0.5)
    assert c.kind == "imprimitive-infinite" and c.verdict == CONSISTENT_ABELIAN
    # reducible (a = -1) with a complex exponent: eigenvalues off the unit circle, Borel group
    c = _classify(-1.0, 0.3 + 0.2j, 0.7)
    assert c.kind == "reducible-borel", str(c)
    assert c.verdict == NON_ABELIAN and c.identity_component_solvable is True


def test_random_rational_parameters_against_kimura():
    rng = np.random.default_rng(7)
    dens = [2, 3, 4, 5, 6, 7, 10, 12]
    agree = decided = 0
    for _ in range(10):
        a, b, c = (F(int(rng.integers(-8, 9)), int(rng.choice(dens))) for _ in range(3))
        if c.denominator == 1 and c <= 0:
            continue
        cl = _classify(str(a), str(b), str(c))
        k = mono.kimura_solvable(a, b, c)
        if cl.identity_component_solvable is not None:
            decided += 1
            agree += cl.identity_component_solvable is k.solvable
    assert decided >= 7 and agree == decided


def test_explicit_groups_quaternion_and_margins():
    i2 = np.array([[1j, 0], [0, -1j]])
    j2 = np.array([[0, 1], [-1, 0]], dtype=complex)
    c = MonodromyGroup([i2, j2]).classify()
    assert c.kind == "imprimitive-finite" and c.projective_order == 4
    assert c.verdict == CONSISTENT_ABELIAN
    # a generic SL2 pair: decided with tiny errors, undecided when the errors are large
    A = np.array([[2.0, 1.0], [1.0, 1.0]], dtype=complex)
    B = np.array([[1.0, 0.0], [1.3, 1.0]], dtype=complex)
    good = MonodromyGroup([A, B], errors=[1e-12, 1e-12]).classify()
    assert good.kind == "SL2" and good.verdict == NON_SOLVABLE
    bad = MonodromyGroup([A, B], errors=[1e-2, 1e-2]).classify()
    assert bad.kind == "undecided" and bad.verdict == INCONCLUSIVE, str(bad)
    # commuting matrices
    D = np.diag([2.0, 0.5]).astype(complex)
    E = np.diag([3.0, 1 / 3]).astype(complex)
    assert MonodromyGroup([D, E]).classify().kind == "abelian"
    assert MonodromyGroup([np.eye(2), -np.eye(2)]).classify().kind == "trivial"


_SL2_A = np.array([[2.0, 1.0], [1.0, 1.0]], dtype=complex)
_SL2_B = np.array([[1.0, 0.0], [1.3, 1.0]], dtype=complex)
_BOREL_A = np.array([[1.1, 0.3], [0.0, 1 / 1.1]], dtype=complex)
_BOREL_B = np.diag([1.2, 1 / 1.2]).astype(complex)


@pytest.mark.parametrize("mats, small_kind, small_verdict", [
    ((_SL2_A, _SL2_B), "SL2", NON_SOLVABLE),
    ((_BOREL_A, _BOREL_B), "reducible-borel", NON_ABELIAN),
    ((np.eye(2), -np.eye(2)), "trivial", CONSISTENT_ABELIAN),
])
def test_large_errors_never_prove_triviality(mats, small_kind, small_verdict):
    # decided with tiny errors; with errors 1e-3 / 1e-2 every generator lies within
    # margin*error of +-I, but that resolution (> cap) proves nothing: inconclusive
    good = MonodromyGroup(list(mats), errors=1e-12).classify()
    assert good.kind == small_kind and good.verdict == small_verdict, str(good)
    for e in (1e-3, 1e-2):
        bad = MonodromyGroup(list(mats), errors=e).classify()
        assert bad.kind == "undecided" and bad.verdict == INCONCLUSIVE, str(bad)


def test_infinite_dihedral_with_large_errors_is_not_declared_finite():
    th = 2 * np.pi * 2 ** 0.5 / 10                 # irrational rotation: infinite order
    A = np.diag([np.exp(1j * th), np.exp(-1j * th)])
    B = np.array([[0, 1], [-1, 0]], dtype=complex)
    c = MonodromyGroup([A, B], errors=1e-12).classify()
    assert c.kind == "imprimitive-infinite" and c.projective_order is None, str(c)
    # errors 3e-4: elements coincide only to ~0.1, so the enumeration would close up into a
    # spurious finite group; it must stay undecided instead
    c = MonodromyGroup([A, B], errors=3e-4).classify()
    assert c.projective_order is None and "imprimitive-infinite" in c.candidates, str(c)
    assert c.kind == "undecided" and c.verdict == INCONCLUSIVE
    assert any("too coarse to enumerate" in r for r in c.reasons)


def test_errors_of_wrong_length_are_named():
    with pytest.raises(ValueError, match="errors"):
        MonodromyGroup([np.eye(2), np.eye(2)], errors=[1e-3, 1e-3, 1e-3])
    with pytest.raises(ValueError, match="errors must be non-negative"):
        MonodromyGroup([np.eye(2), np.eye(2)], errors=[1e-3, -1.0])


def test_three_generators():
    r0, r1 = mono.hypergeometric_monodromy("1/4", "-1/12", "1/2")
    Minf = np.linalg.inv(r1.matrix @ r0.matrix)          # the loop around infinity
    c = MonodromyGroup([r0, r1, Minf]).classify()
    assert c.kind == "finite-primitive" and c.projective_order == 12
    r0, r1 = mono.hypergeometric_monodromy("3/10", "9/20", "7/10")
    c = MonodromyGroup([r0, r1, np.linalg.inv(r1.matrix @ r0.matrix)]).classify()
    assert c.kind == "SL2" and c.verdict == NON_SOLVABLE
    D = [np.diag([2.0, 0.5]), np.diag([3.0, 1 / 3]), np.diag([1j, -1j])]
    assert MonodromyGroup(D).classify().kind == "abelian"


def test_unverified_loops_are_refused():
    sys_ = mono.hypergeometric(0.3, 0.45, 0.7)
    good = sys_.transport(mono.circle(0.0, 0.5))
    open_ = sys_.transport(mono.segment(0.5, 0.5 + 0.5j))
    assert good.verified and not open_.verified
    G = MonodromyGroup([good, open_])
    assert G.unverified() == [1]
    with pytest.raises(UnverifiedLoopError, match="refusing to classify"):
        G.classify()
    with pytest.raises(ValueError):              # UnverifiedLoopError is a ValueError
        G.classify()
    H = MonodromyGroup.verified_only([good, open_])
    assert len(H) == 1 and H.classify().kind == "abelian"


def test_kimura_exact_cases_and_bad_input():
    assert mono.kimura_solvable("1/2", "1/2", 1).case == "SL2"
    assert mono.kimura_solvable(-1, "3/10", "7/10").case == "reducible"
    assert mono.kimura_solvable("11/60", "-1/60", "1/2").projective_order == 60
    t = mono.kimura_solvable("1/4", "-1/12", "1/2")
    assert t.case == "tetrahedral" and t.exponent_differences == (F(1, 2), F(1, 3), F(1, 3))
    with pytest.raises(TypeError, match="a must be rational"):
        mono.kimura_solvable(1j, 0, 1)
    with pytest.raises(ValueError, match="not a rational"):
        mono.kimura_solvable("x", 0, 1)
    with pytest.raises(ValueError, match="square"):
        MonodromyGroup([np.ones((2, 3))])
    with pytest.raises(ValueError, match="2x2"):
        MonodromyGroup([np.eye(3), np.eye(3) * 2]).sl2()


# -- precedence: commuting generators are "abelian" first (docs/math.md §5.3, item 1) --------
_PAR = np.array([[1.0, 1.0], [0.0, 1.0]], dtype=complex)
_MPAR = np.array([[-1.0, 0.5], [0.0, -1.0]], dtype=complex)


def test_commuting_parabolic_pair_is_abelian_first():
    assert np.allclose(_PAR @ _MPAR, _MPAR @ _PAR)          # they do commute
    G = MonodromyGroup([_PAR, _MPAR])
    comm = G.commutator_norm(0, 1)
    assert comm.decide_zero() is True                      # decided from a computed norm
    c = G.classify()
    assert c.kind == "abelian", str(c)
    assert c.candidates == ("abelian",)
    assert c.verdict == CONSISTENT_ABELIAN and c.identity_component_abelian is True
    assert any(s.name.startswith("||[M0,M1]||") for s in c.statistics)
    # the same pair known only to 1e-3: commuting cannot be proven, nor refuted
    c = MonodromyGroup([_PAR, _MPAR], errors=1e-3).classify()
    assert c.kind == "undecided" and "abelian" in c.candidates, str(c)


def test_non_commuting_reducible_pair_is_not_abelian():
    B = np.diag([1j, -1j])                                  # common eigenvector e1 with _PAR
    G = MonodromyGroup([_PAR, B], errors=1e-12)
    assert G.commutator_norm(0, 1).decide_zero() is False   # non-zero beyond margin
    c = G.classify()
    assert c.kind == "reducible-unipotent" and "abelian" not in c.candidates, str(c)
    assert c.verdict == CONSISTENT_ABELIAN
