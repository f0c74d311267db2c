"""Butcher tables of the ensemble integrators, in the one layout the kernel reads.

Every method is described by the same fields, so the Cython kernel has one step
routine for all of them (ext/ensemble.pyx):

- ``S`` stages per step; stage 0 is ``f(y)``, carried over from the previous step
  (first-same-as-last); stages ``1..S-1`` are evaluated at ``y + h * sum_j A[s, j] K[j]``.
- ``fsal``: the input of stage ``S-1`` *is* the new state (``A[S-1] == b``), so
  ``f(y_new)`` comes for free; otherwise ``f(y_new)`` is evaluated into slot ``knew = S``.
- ``b`` (nk,): weights of the propagated solution; ``e`` (nk,): weights of the error
  estimate (``h * sum_j e_j K_j``); ``e3``: DOP853's 3rd-order estimate (``err_kind == 2``).
- slots ``knew+1 .. nk-1``: extra stages for dense output (DOP853), rows of ``A``.
- ``P`` (nk, deg): dense output ``y(t + theta h) = y + h sum_j K_j sum_d P[j, d] theta**(d+1)``.
- controller constants (Hairer's PI controller): ``safe, fac1, fac2, beta, expo1``;
  ``order``: the exponent of the initial-step heuristic (Hairer's ``iord``).

Rosenbrock methods (``ROSENBROCK``, ``get_rosenbrock``) have their own layout,
``RosenbrockTableau``: the transformed form of Hairer & Wanner II, eq. (7.25), with stage
increments ``u_i`` solving ``(I/(h gamma) - J) u_i = f(y + sum_j a[i, j] u_j)
+ sum_j C[i, j]/h u_j``, ``y_new = y + sum_i m_i u_i``, error ``sum_i e_i u_i`` and dense
output ``y + sum_i u_i sum_d P[i, d] theta**(d+1)`` (details above ``RosenbrockTableau``).
"""
from __future__ import annotations

from dataclasses import dataclass
import functools

import numpy as np
from numpy.polynomial import polynomial as npoly

METHODS = ("rk4", "dp5", "tsit5", "dop853", "vern7", "gd")
ADAPTIVE = ("dp5", "tsit5", "dop853", "vern7")

# Dormand-Prince 5(4): Dormand & Prince (1980); dense output of Shampine (1986),
# as in scipy.integrate.RK45 (values copied from scipy 1.17, BSD licence).
_DP5_A = [[0.0, 0.0, 0.0, 0.0, 0.0], [0.2, 0.0, 0.0, 0.0, 0.0], [0.075, 0.225, 0.0, 0.0, 0.0], [0.9777777777777777, -3.7333333333333334, 3.5555555555555554, 0.0, 0.0], [2.9525986892242035, -11.595793324188385, 9.822892851699436, -0.2908093278463649, 0.0], [2.8462752525252526, -10.757575757575758, 8.906422717743473, 0.2784090909090909, -0.2735313036020583]]
_DP5_B = [0.09114583333333333, 0.0, 0.44923629829290207, 0.6510416666666666, -0.322376179245283, 0.13095238095238096]
_DP5_E = [-0.0012326388888888888, 0.0, 0.0042527702905061394, -0.03697916666666667, 0.05086379716981132, -0.0419047619047619, 0.025]
_DP5_P = [[1.0, -2.8535800653862835, 3.0717434641059005, -1.1270175653862835], [0.0, 0.0, 0.0, 0.0], [0.0, 4.023133379230305, -6.249321565289, 2.675424484351598], [0.0, -3.7324019615885042, 10.068970589843675, -5.685526961588504], [0.0, 2.5548038301849423, -6.399112377351017, 3.5219323679207912], [0.0, -1.3744241142186024, 3.272657752246729, -1.7672812570757455], [0.0, 1.3824689317781436, -3.764937863556287, 2.382468931778144]]

# DOP853: Hairer, Norsett & Wanner, Solving ODEs I, 2nd ed. (Fortran DOP853); values
# copied from scipy.integrate._ivp.dop853_coefficients (scipy 1.17, BSD licence).
# Rows 0..11: main stages; row 12: y_new (unused, FSAL); rows 13..15: extra dense-output stages.
_DOP853_A = [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.05260015195876773, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0197250569845379, 0.0591751709536137, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.02958758547680685, 0.0, 0.08876275643042054, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.2413651341592667, 0.0, -0.8845494793282861, 0.924834003261792, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.037037037037037035, 0.0, 0.0, 0.17082860872947386, 0.12546768756682242, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.037109375, 0.0, 0.0, 0.17025221101954405, 0.06021653898045596, -0.017578125, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.03709200011850479, 0.0, 0.0, 0.17038392571223998, 0.10726203044637328, -0.015319437748624402, 0.008273789163814023, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.6241109587160757, 0.0, 0.0, -3.3608926294469414, -0.868219346841726, 27.59209969944671, 20.154067550477894, -43.48988418106996, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.47766253643826434, 0.0, 0.0, -2.4881146199716677, -0.590290826836843, 21.230051448181193, 15.279233632882423, -33.28821096898486, -0.020331201708508627, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [-0.9371424300859873, 0.0, 0.0, 5.186372428844064, 1.0914373489967295, -8.149787010746927, -18.52006565999696, 22.739487099350505, 2.4936055526796523, -3.0467644718982196, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [2.273310147516538, 0.0, 0.0, -10.53449546673725, -2.0008720582248625, -17.9589318631188, 27.94888452941996, -2.8589982771350235, -8.87285693353063, 12.360567175794303, 0.6433927460157636, 0.0, 0.0, 0.0, 0.0, 0.0], [0.054293734116568765, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585, 0.3111643669578199, -0.1521609496625161, 0.20136540080403034, 0.04471061572777259, 0.0, 0.0, 0.0, 0.0], [0.056167502283047954, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25350021021662483, -0.2462390374708025, -0.12419142326381637, 0.15329179827876568, 0.00820105229563469, 0.007567897660545699, -0.008298, 0.0, 0.0, 0.0], [0.03183464816350214, 0.0, 0.0, 0.0, 0.0, 0.028300909672366776, 0.053541988307438566, -0.05492374857139099, 0.0, 0.0, -0.00010834732869724932, 0.0003825710908356584, -0.00034046500868740456, 0.1413124436746325, 0.0, 0.0], [-0.42889630158379194, 0.0, 0.0, 0.0, 0.0, -4.697621415361164, 7.683421196062599, 4.06898981839711, 0.3567271874552811, 0.0, 0.0, 0.0, -0.0013990241651590145, 2.9475147891527724, -9.15095847217987, 0.0]]
_DOP853_B = [0.054293734116568765, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585, 0.3111643669578199, -0.1521609496625161, 0.20136540080403034, 0.04471061572777259]
_DOP853_E3 = [-0.18980075407240762, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585, -0.4226823213237919, -0.1521609496625161, 0.20136540080403034, 0.02265179219836082, 0.0]
_DOP853_E5 = [0.01312004499419488, 0.0, 0.0, 0.0, 0.0, -1.2251564463762044, -0.4957589496572502, 1.6643771824549864, -0.35032884874997366, 0.3341791187130175, 0.08192320648511571, -0.022355307863886294, 0.0]
_DOP853_D = [[-8.428938276109013, 0.0, 0.0, 0.0, 0.0, 0.5667149535193777, -3.0689499459498917, 2.38466765651207, 2.117034582445028, -0.871391583777973, 2.2404374302607883, 0.6315787787694688, -0.08899033645133331, 18.148505520854727, -9.194632392478356, -4.436036387594894], [10.427508642579134, 0.0, 0.0, 0.0, 0.0, 242.28349177525817, 165.20045171727028, -374.5467547226902, -22.113666853125306, 7.733432668472264, -30.674084731089398, -9.332130526430229, 15.697238121770845, -31.139403219565178, -9.35292435884448, 35.81684148639408], [19.985053242002433, 0.0, 0.0, 0.0, 0.0, -387.0373087493518, -189.17813819516758, 527.8081592054236, -11.57390253995963, 6.8812326946963, -1.0006050966910838, 0.7777137798053443, -2.778205752353508, -60.19669523126412, 84.32040550667716, 11.99229113618279], [-25.69393346270375, 0.0, 0.0, 0.0, 0.0, -154.18974869023643, -231.5293791760455, 357.6391179106141, 93.40532418362432, -37.45832313645163, 104.0996495089623, 29.8402934266605, -43.53345659001114, 96.32455395918828, -39.17726167561544, -149.72683625798564]]

# Tsitouras 5(4): Ch. Tsitouras, Comput. Math. Appl. 62 (2011) 770-775, with its
# 4th-order continuous extension (the b_i(theta) of the paper, expanded in powers of theta).
_TSIT5_C = [0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0]
_TSIT5_A = [
    [],
    [0.161],
    [-0.008480655492356989, 0.335480655492357],
    [2.8971530571054935, -6.359448489975075, 4.3622954328695815],
    [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525],
    [5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
     -0.028269050394068383],
    [0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081,
     2.324710524099774],
]
_TSIT5_E = [-0.00178001105222577714, -0.0008164344596567469, 0.007880878010261995,
            -0.1447110071732629, 0.5823571654525552, -0.45808210592918697, 1.0 / 66.0]
_TSIT5_P = [
    [1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
    [0.0, 0.1317, -0.2234, 0.1017],
    [0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253],
    [0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
    [0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
    [0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
    [0.0, 1.5, -4.0, 2.5],
]


# Verner's "most efficient" 7(6) pair (J. H. Verner, "Numerically optimal Runge-Kutta pairs
# with interpolants", Numer. Algorithms 53 (2010) 383-396) and its 7th-order interpolant,
# which takes 6 more stages, the first of them f(y_new): the 40-digit values of
# RKV76.IIa.Efficient.00001675585.081206 on Verner's page (www.sfu.ca/~jverner), rounded to
# doubles. Rows 0..9: the step; row 10: y_new (= b); rows 11..15: dense-output stages.
_VERN7_A = [
    [],
    [0.005],
    [-1.07679012345679, 1.185679012345679],
    [0.04083333333333333, 0.0, 0.1225],
    [0.6389139236255726, 0.0, -2.455672638223657, 2.272258714598084],
    [-2.6615773750187572, 0.0, 10.804513886456137, -8.3539146573962, 0.820487594956657],
    [6.067741434696771, 0.0, -24.711273635911084, 20.427517930788895, -1.9061579788166472,
     1.006172249242068],
    [12.054670076253203, 0.0, -49.75478495046899, 41.142888638604674, -4.461760149974004,
     2.042334822239175, -0.09834843665406108],
    [10.138146522881808, 0.0, -42.6411360317175, 35.76384003992257, -4.3480228403929075,
     2.0098622683770357, 0.3487490460338272, -0.27143900510483127],
    [-45.030072034298676, 0.0, 187.3272437654589, -154.02882369350186, 18.56465306347536,
     -7.141809679295079, 1.3088085781613785, 0.0, 0.0],
    [0.04715561848627222, 0.0, 0.0, 0.25750564298434153, 0.2621665397741262,
     0.15216092656738558, 0.49399691700324844, -0.29430311714032503, 0.0813174723249511, 0.0],
    [0.0523222769159969, 0.0, 0.0, 0.22495861826705715, 0.017443709248776376,
     -0.007669379876829393, 0.03435896044073285, -0.0410209723009395, 0.025651133005205617, 0.0,
     -0.0160443457],
    [0.053053341257859085, 0.0, 0.0, 0.12195301011401886, 0.017746840737602496,
     -0.0005928372667681495, 0.008381833970853752, -0.01293369259698612, 0.009412056815253861,
     0.0, -0.005353253107275676, -0.06666729992455811],
    [0.03887903257436304, 0.0, 0.0, -0.0024403203308301317, -0.0013928917214672623,
     -0.00047446291558680135, 0.00039207932413159514, -0.00040554733285128004,
     0.00019897093147716726, 0.0, -0.00010278198793179169, 0.03385661513870267,
     0.1814893063199928],
    [0.05723681204690013, 0.0, 0.0, 0.22265948066761182, 0.12344864200186899,
     0.04006332526666491, -0.05269894848581452, 0.04765971214244523, -0.02138895885042213, 0.0,
     0.015193891064036402, 0.12060546716289655, -0.022779423016187374, 0.0],
    [0.051372038802756814, 0.0, 0.0, 0.5414214473439406, 0.350399806692184, 0.14193112269692182,
     0.10527377478429423, -0.031081847805874016, -0.007401883149519145, 0.0,
     -0.006377932504865363, -0.17325495908361865, -0.18228156777622026, 0.0, 0.0],
]
_VERN7_B = [
    0.04715561848627222, 0.0, 0.0, 0.25750564298434153, 0.2621665397741262,
    0.15216092656738558, 0.49399691700324844, -0.29430311714032503, 0.0813174723249511, 0.0]
_VERN7_BHAT = [
    0.044608606606341174, 0.0, 0.0, 0.26716403785713727, 0.2201018300177293,
    0.2188431703143157, 0.22898717054112028, 0.0, 0.0, 0.020295184663356284]
# y(t + theta h) = y + h sum_j K_j sum_d P[j, d] theta**(d+1), slots as in _VERN7_A
_VERN7_P = [
    [1.0, -8.413387198332767, 33.675508884490895, -70.80159089484886, 80.64695108301298,
     -47.19413969837522, 11.133813442539243],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 8.754921980674396, -88.4596828699771, 346.9017638429916, -629.2580030059837,
     529.6773755604193, -167.35886986514018],
    [0.0, 8.913387586637922, -90.06081846893218, 353.1807459217058, -640.6476819744374,
     539.2646279047156, -170.38809442991547],
    [0.0, 5.1733120298478, -52.271115900055385, 204.9853867374073, -371.8306118563603,
     312.9880934374529, -98.89290352172495],
    [0.0, 16.79537744079696, -169.70040000059728, 665.4937727009246, -1207.1638892336007,
     1016.1291515818546, -321.06001557237494],
    [0.0, -10.005997536098665, 101.1005433052275, -396.47391512378437, 719.1787707014183,
     -605.3681033918824, 191.27439892797935],
    [0.0, 2.764708833638599, -27.934602637390462, 109.54779186137893, -198.7128113064482,
     167.26633571640318, -52.85010499525706],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, -2.1696320280163506, 22.016696037569876, -86.90152427798948, 159.22388973861476,
     -135.9618306534588, 43.792401183280006],
    [0.0, -4.890070188793804, 22.75407737425176, -30.78034218537731, -2.797194317207249,
     31.369456637508403, -15.655927320381801],
    [0.0, 10.862170929551967, -50.542971417827104, 68.37148040407511, 6.213326521632409,
     -69.68006323194157, 34.776056794509195],
    [0.0, -11.37286691922923, 130.79058078246717, -488.65113677785604, 832.2148793276441,
     -664.7743368554426, 201.79288044241662],
    [0.0, -5.919778732715007, 63.27679965889219, -265.432682088738, 520.1009254140611,
     -467.412109533902, 155.3868452824017],
    [0.0, -10.492146197961823, 105.35538525188011, -409.43975011988937, 732.831448907654,
     -606.3044574733512, 188.0495196316683],
]


@dataclass(frozen=True)
class Tableau:
    """One explicit Runge–Kutta method in the kernel's layout (see the module docstring).

    Parameters
    ----------
    name : str
        The method, one of `METHODS`.
    S : int
        Stages per step.
    fsal : bool
        Whether the last stage's input is the new state (first same as last).
    nk : int
        Stage slots, dense-output stages included.
    n_extra : int
        Extra stages for dense output.
    err_kind : int
        0: no error estimate (fixed step); 1: embedded pair; 2: DOP853's 5/3 estimate.
    order : int
        The exponent of the initial-step heuristic (Hairer's ``iord``).
    A : ndarray of float64, shape (nk, nk)
        Stage coefficients.
    b : ndarray of float64, shape (nk,)
        Weights of the propagated solution.
    e : ndarray of float64, shape (nk,)
        Weights of the error estimate.
    e3 : ndarray of float64, shape (nk,)
        DOP853's 3rd-order estimate (zero otherwise).
    P : ndarray of float64, shape (nk, deg)
        Dense-output polynomial weights.
    safe, fac1, fac2, beta : float, optional
        Hairer's PI step-size controller constants.
    err_order : int, optional
        q, the power of h in the local error estimate (the lower order of the pair plus 1):
        the controller's exponent is 1/q.
    stiff_test : bool, optional
        Whether Hairer's stiffness test applies: the last stage has node c = 1, so
        f(y_new) - f(y_{S-1}) over y_new - y_{S-1} estimates the Jacobian's size.
    """

    name: str
    S: int
    fsal: bool
    nk: int
    n_extra: int
    err_kind: int          # 0: none (fixed step), 1: embedded pair, 2: DOP853's 5/3 estimate
    order: int
    A: np.ndarray          # (nk, nk)
    b: np.ndarray          # (nk,)
    e: np.ndarray          # (nk,)
    e3: np.ndarray         # (nk,)
    P: np.ndarray          # (nk, deg)
    safe: float = 0.9
    fac1: float = 0.2
    fac2: float = 10.0
    beta: float = 0.04
    err_order: int = 5
    stiff_test: bool = False

    @property
    def knew(self) -> int:
        """Slot of f(y_new)."""
        return self.S - 1 if self.fsal else self.S

    @property
    def expo1(self) -> float:
        """Exponent of the error in the PI controller (Hairer: 1/q - 0.75 beta for dopri5,
        1/q - 0.2 beta for DOP853; q = `err_order`)."""
        q = float(self.err_order)
        return 1.0 / q - self.beta * (0.75 if q == 5.0 else 0.2)

    @property
    def adaptive(self) -> bool:
        """Whether the method has an error estimate (adaptive step)."""
        return self.err_kind != 0

    @property
    def c(self) -> np.ndarray:
        """Nodes c_s = sum_j A[s, j] (row sums)."""
        return self.A.sum(axis=1)

    @functools.cached_property
    def stability_polynomial(self) -> np.ndarray:
        """Coefficients (S + 1,) of R(z) = 1 + sum_k z^k b^T A^(k-1) 1, lowest first: one step
        of y' = lambda y multiplies y by R(h lambda)."""
        A, b = self.A[:self.S, :self.S], self.b[:self.S]
        coeffs, v = [1.0], np.ones(self.S)
        for _ in range(self.S):
            coeffs.append(float(b @ v))
            v = A @ v
        return np.array(coeffs)

    @functools.cached_property
    def stability_boundary(self) -> float:
        """The real stability boundary of `stability_polynomial` (`real_stability_boundary`):
        6.39 for DOP853, 4.64 for Vern7."""
        return real_stability_boundary(self.stability_polynomial, self.S + 2.0)

    def dense_weights(self, theta: float) -> np.ndarray:
        """Dense-output weights ``w_j(theta)`` with ``y(t + theta h) = y + h sum_j w_j K_j``.

        Parameters
        ----------
        theta : float
            Fraction of the step, in [0, 1].

        Returns
        -------
        ndarray of float64, shape (nk,)
        """
        powers = theta ** np.arange(1, self.P.shape[1] + 1)
        return self.P @ powers


def real_stability_boundary(coeffs, upper: float) -> float:
    """The real stability boundary of a stability polynomial.

    Parameters
    ----------
    coeffs : array_like of float, shape (d + 1,)
        ``R(z) = sum_k coeffs[k] z^k``, lowest power first.
    upper : float
        A point beyond the boundary: ``|R(-upper)| > 1``.

    Returns
    -------
    float
        The largest ``x > 0`` with ``|R(-s)| <= 1`` for every ``s`` in ``[0, x]``: a step
        ``h`` of a linear mode ``y' = lambda y``, ``lambda < 0``, is stable for
        ``h |lambda|`` up to it.
    """
    from scipy.optimize import brentq
    c = np.asarray(coeffs, dtype=float)

    def excess(s):
        return np.abs(npoly.polyval(-s, c)) - 1.0

    # the first grid point where |R| exceeds 1 brackets the boundary
    grid = np.linspace(1e-3, upper, 4000)
    above = np.flatnonzero(excess(grid) > 0.0)
    if above.size == 0 or above[0] == 0:
        raise ValueError(f"|R(-s)| does not cross 1 on (0, {upper}]")
    return float(brentq(excess, grid[above[0] - 1], grid[above[0]], xtol=1e-12))


def _square(rows, n) -> np.ndarray:
    a = np.zeros((n, n))
    for i, row in enumerate(rows):
        a[i, :len(row)] = row
    return a


def _pad(v, n) -> np.ndarray:
    out = np.zeros(n)
    out[:len(v)] = v
    return out


def _dop853_dense() -> np.ndarray:
    """(16, 7) polynomial weights of Hairer's 7th-order DOP853 interpolant.

    Hairer's contd8 writes y(theta) - y = theta(F0 + (1-theta)(F1 + theta(F2 + (1-theta)(F3
    + theta(F4 + (1-theta)(F5 + theta F6)))))) with F0 = dy, F1 = h f_old - dy,
    F2 = 2 dy - h (f_new + f_old), F3..F6 = h D K and dy = h sum b_j K_j. Every F is linear
    in h K, so the interpolant is y + h sum_j K_j p_j(theta); this expands the p_j.
    """
    nk = 16
    b = _pad(_DOP853_B, nk)
    e0 = np.eye(nk)[0]
    e12 = np.eye(nk)[12]
    F = [b, e0 - b, 2 * b - (e12 + e0)] + [np.asarray(r) for r in _DOP853_D]  # (7, nk) coefficients
    x = np.array([0.0, 1.0])
    one_minus = np.array([1.0, -1.0])
    out = np.zeros((nk, 8))
    for j in range(nk):
        poly = np.array([F[6][j]])
        for m in range(5, -1, -1):
            poly = npoly.polymul(poly, x if m % 2 == 1 else one_minus)
            # the factor multiplying F[m+1]-bracket: theta after odd m, (1 - theta) after even m
            poly = npoly.polyadd(poly, [F[m][j]])
        poly = npoly.polymul(poly, x)
        out[j, :len(poly)] = poly
    assert np.all(out[:, 0] == 0.0)
    return out[:, 1:]


@functools.lru_cache(maxsize=None)
def get(method: str) -> Tableau | RosenbrockTableau:
    """The tableau of an integration method (cached).

    Parameters
    ----------
    method : str
        One of `METHODS`, or of `ROSENBROCK`.

    Returns
    -------
    Tableau or RosenbrockTableau
        A `RosenbrockTableau` for the names in `ROSENBROCK`.

    Raises
    ------
    ValueError
        For an unknown method.
    """
    if method == "dp5":
        nk = 7
        A = _square(list(_DP5_A) + [list(_DP5_B)], nk)
        return Tableau("dp5", S=7, fsal=True, nk=nk, n_extra=0, err_kind=1, order=5, A=A,
                       b=_pad(_DP5_B, nk), e=_pad(_DP5_E, nk), e3=np.zeros(nk),
                       P=np.asarray(_DP5_P, dtype=float))
    if method == "tsit5":
        nk = 7
        A = _square(_TSIT5_A, nk)
        return Tableau("tsit5", S=7, fsal=True, nk=nk, n_extra=0, err_kind=1, order=5, A=A,
                       b=_pad(_TSIT5_A[6], nk), e=_pad(_TSIT5_E, nk), e3=np.zeros(nk),
                       P=np.asarray(_TSIT5_P, dtype=float))
    if method == "dop853":
        nk = 16
        A = np.asarray(_DOP853_A, dtype=float).copy()
        return Tableau("dop853", S=12, fsal=False, nk=nk, n_extra=3, err_kind=2, order=8, A=A,
                       b=_pad(_DOP853_B, nk), e=_pad(_DOP853_E5, nk), e3=_pad(_DOP853_E3, nk),
                       P=_dop853_dense(), fac1=0.333, fac2=6.0, beta=0.0, err_order=8,
                       stiff_test=True)
    if method == "vern7":
        # 9 new stages and f(y_new) per step (no FSAL); the 5 further interpolant stages
        # are evaluated only on steps with a save point or an escape crossing
        nk = 16
        A = _square(_VERN7_A, nk)
        b = _pad(_VERN7_B, nk)
        return Tableau("vern7", S=10, fsal=False, nk=nk, n_extra=5, err_kind=1, order=7, A=A,
                       b=b, e=b - _pad(_VERN7_BHAT, nk), e3=np.zeros(nk),
                       P=np.asarray(_VERN7_P, dtype=float), beta=0.0, err_order=7,
                       stiff_test=True)
    if method == "rk4":
        nk = 5
        A = _square([[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]], nk)
        # classical RK4 with its 3rd-order continuous extension
        P = np.array([[1.0, -1.5, 2.0 / 3.0], [0.0, 1.0, -2.0 / 3.0], [0.0, 1.0, -2.0 / 3.0],
                      [0.0, -0.5, 2.0 / 3.0], [0.0, 0.0, 0.0]])
        return Tableau("rk4", S=4, fsal=False, nk=nk, n_extra=0, err_kind=0, order=4, A=A,
                       b=_pad([1 / 6, 1 / 3, 1 / 3, 1 / 6], nk), e=np.zeros(nk), e3=np.zeros(nk), P=P)
    if method == "gd":
        nk = 2
        return Tableau("gd", S=1, fsal=False, nk=nk, n_extra=0, err_kind=0, order=1,
                       A=np.zeros((nk, nk)), b=_pad([1.0], nk), e=np.zeros(nk), e3=np.zeros(nk),
                       P=np.array([[1.0], [0.0]]))
    if method in ROSENBROCK:
        return get_rosenbrock(method)
    if method in MULTISTEP:
        return get_multistep(method)
    raise ValueError(f"method must be one of {METHODS + ROSENBROCK + MULTISTEP}, got {method!r}")


# ---------------------------------------------------------------------------------------
# Rosenbrock (linearly implicit) methods for stiff autonomous problems y' = f(y).
#
# Layout: the *transformed* Rosenbrock formulation of Hairer & Wanner, Solving ODEs II
# (2nd ed., 1996), Sec. IV.7, eq. (7.25), with J = f'(y) and stages i = 0..S-1:
#
#     (I/(h*gamma) - J) u_i = f(y + sum_{j<i} a[i,j] u_j) + sum_{j<i} (C[i,j]/h) u_j
#     y_new = y + sum_i m[i] u_i
#     err   = sum_i e[i] u_i                 (embedded estimate, in y units;
#                                             the embedded solution is y_new - err)
#     y(t + theta h) = y + sum_i u_i sum_{d=1..deg} P[i, d-1] theta**d,  theta in [0, 1].
#
# The original form (HW II (7.4): k_i = h f(y + sum alpha_ij k_j) + h J sum gamma_ij k_j,
# y_new = y + sum b_j k_j) is recovered with Gamma = (diag(1/gamma) - C)^-1 (lower
# triangular, gamma on the diagonal), u = Gamma k, alpha = a Gamma, b = m Gamma.
# Both methods below are stiffly accurate: the input of the last stage is the embedded
# solution, y_new = that input + u_{S-1} (m = a[S-1] + e_{S-1}) and err = u_{S-1}.
#
# Coefficient sources (the stage values "ks" of OrdinaryDiffEq.jl solve
# W ks_i = -(f(...) + sum_j C_ij/dt ks_j) with W = J - I/(dt gamma), i.e. they are exactly
# the u_i above, with the same A (= a) and C; their b, btilde are m, e):
#   OrdinaryDiffEq.jl (MIT "Expat" licence, (c) 2016-2020 Chris Rackauckas, Yingbo Ma,
#   Julia Computing Inc. and contributors), commit b211787f7b18d3c5391121bd8c9e2d5fee54efee:
#   - Rodas5P: lib/OrdinaryDiffEqRosenbrock/src/rosenbrock_tableaus.jl, RODAS5PA,
#     RODAS5PC, gamma and RODAS5PH of `Rodas5PTableau`. Paper: G. Steinebach,
#     "Construction of Rosenbrock-Wanner method Rodas5P and numerical benchmarks within
#     the Julia Differential Equations package", BIT Numer. Math. 63, 27 (2023).
#   - RODAS (Rodas4): lib/OrdinaryDiffEqRosenbrockTableaus/src/rosenbrock_tableaus.jl,
#     RODAS4A, RODAS4C, gamma and RODAS4H of `Rodas4Tableau`; identical to ROCOE, METH=1
#     of Hairer's rodas.f (A21..A54, C21..C65, GAMMA, D21..D35), version of Oct. 28, 1996.
#     Book: E. Hairer & G. Wanner, Solving Ordinary Differential Equations II, 2nd ed.,
#     Springer 1996, Sec. IV.7 and VI.3.
# Dense output in both sources (lib/OrdinaryDiffEqRosenbrock/src/rosenbrock_interpolants.jl,
# rodas.f CONTRO): y(theta) = y (1-theta) + theta (y_new + (1-theta)(d1 + theta (d2 +
# theta d3))), d_k = sum_i H[k, i] u_i, which expands to
#     P[i] = [m_i + H1_i, -H1_i + H2_i, -H2_i + H3_i, -H3_i]   (no H3 term for RODAS).
# The order conditions of the dense output leave H[:, S-1] (the weights of u_{S-1} = err)
# free: they multiply b - b_hat, which vanishes on all trees up to the embedded order. Those
# three Rodas5P numbers are therefore checked by their provenance only, not by the tests.
# ---------------------------------------------------------------------------------------

ROSENBROCK = ("rodas5p", "rodas4")

_RODAS5P_GAMMA = 0.21193756319429014
_RODAS5P_A = [
    [],
    [3.0],
    [2.849394379747939, 0.45842242204463923],
    [-6.954028509809101, 2.489845061869568, -10.358996098473584],
    [2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641],
    [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
     0.030198172008377946],
    [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
     0.030198172008377946, 1.0],
    [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
     0.030198172008377946, 1.0, 1.0],
]
_RODAS5P_C = [
    [],
    [-14.155112264123755],
    [-17.97296035885952, -2.859693295451294],
    [147.12150275711716, -1.41221402718213, 71.68940251302358],
    [165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306],
    [24.854864614690072, -3.0009227002832186, 47.4931110020768, 5.5814197821558125,
     -0.6610691825249471],
    [30.91273214028599, -3.1208243349937974, 77.79954646070892, 34.28646028294783,
     -19.097331116725623, -28.087943162872662],
    [37.80277123390563, -3.2571969029072276, 112.26918849496327, 66.9347231244047,
     -40.06618937091002, -54.66780262877968, -9.48861652309627],
]
_RODAS5P_H = [
    [25.948786856663858, -2.5579724845846235, 10.433815404888879, -2.3679251022685204,
     0.524948541321073, 1.1241088310450404, 0.4272876194431874, -0.17202221070155493],
    [-9.91568850695171, -0.9689944594115154, 3.0438037242978453, -24.495224566215796,
     20.176138334709044, 15.98066361424651, -6.789040303419874, -6.710236069923372],
    [11.419903575922262, 2.8879645146136994, 72.92137995996029, 80.12511834622643,
     -52.072871366152654, -59.78993625266729, -0.15582684282751913, 4.883087185713722],
]

_RODAS4_GAMMA = 0.25
_RODAS4_A = [
    [],
    [1.544],
    [0.9466785280815826, 0.2557011698983284],
    [3.314825187068521, 2.896124015972201, 0.9986419139977817],
    [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895],
    [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895, 1.0],
]
_RODAS4_C = [
    [],
    [-5.6688],
    [-2.430093356833875, -0.2063599157091915],
    [-0.1073529058151375, -9.594562251023355, -20.47028614809616],
    [7.496443313967647, -10.24680431464352, -33.99990352819905, 11.7089089320616],
    [8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
     -6.058818238834054],
]
_RODAS4_H = [
    [10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823,
     1.025137723295662, 0.0],
    [-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386,
     -6.594389125716872, 0.0],
]


@dataclass(frozen=True)
class RosenbrockTableau:
    """One Rosenbrock method in the transformed layout (Hairer & Wanner II, eq. (7.25)).

    Parameters
    ----------
    name : str
        The method, one of `ROSENBROCK`.
    S : int
        Stages.
    gamma : float
        The diagonal coefficient.
    a : ndarray of float64, shape (S, S)
        Strictly lower triangular stage coefficients.
    C : ndarray of float64, shape (S, S)
        Strictly lower triangular coefficients of the ``u_j / h`` terms.
    m : ndarray of float64, shape (S,)
        Weights of the new state.
    e : ndarray of float64, shape (S,)
        Weights of the error estimate.
    P : ndarray of float64, shape (S, deg)
        Dense-output polynomial weights.
    order : int
        Order of the new state.
    order_embedded : int
        Order of the embedded solution ``y_new − err``.
    safe, fac1, fac2 : float, optional
        Step-size controller constants.

    Notes
    -----
    The controller constants are Hairer's RODAS defaults (rodas.f: ``WORK(3) = 0.2 <=
    hnew/hold <= WORK(4) = 6``, safety factor ``WORK(5) = 0.9``): ``hnew = h / max(1/fac2,
    min(1/fac1, err**expo / safe))`` with ``expo = 1/(order_embedded + 1)`` (1/4 in rodas.f;
    rodas.f by default also applies Gustafsson's predictive correction, ``IWORK(3) = 1``).
    """

    name: str
    S: int
    gamma: float
    a: np.ndarray          # (S, S) strictly lower triangular
    C: np.ndarray          # (S, S) strictly lower triangular
    m: np.ndarray          # (S,) weights of y_new
    e: np.ndarray          # (S,) weights of the error estimate
    P: np.ndarray          # (S, deg) dense output
    order: int             # order of y_new
    order_embedded: int    # order of y_new - err
    safe: float = 0.9
    fac1: float = 0.2
    fac2: float = 6.0

    @property
    def expo(self) -> float:
        """Exponent of the error norm in the step-size controller."""
        return 1.0 / (self.order_embedded + 1)

    @property
    def Gamma(self) -> np.ndarray:
        """(S, S) matrix (gamma_ij) of the original form: (diag(1/gamma) - C)^-1."""
        return np.tril(np.linalg.inv(np.eye(self.S) / self.gamma - self.C))

    def dense_weights(self, theta: float) -> np.ndarray:
        """Dense-output weights ``w_i(theta)`` with ``y(t + theta h) = y + sum_i w_i u_i``.

        Parameters
        ----------
        theta : float
            Fraction of the step, in [0, 1].

        Returns
        -------
        ndarray of float64, shape (S,)
        """
        powers = theta ** np.arange(1, self.P.shape[1] + 1)
        return self.P @ powers


def _rosenbrock_dense(m: np.ndarray, H) -> np.ndarray:
    """P (S, nH+1) from y(th) = y(1-th) + th y_new + th(1-th)(d1 + th d2 + ...)."""
    H = np.asarray(H, dtype=float)
    nH, S = H.shape
    P = np.zeros((S, nH + 1))
    P[:, 0] = m + H[0]
    for k in range(1, nH):
        P[:, k] = H[k] - H[k - 1]
    P[:, nH] = -H[nH - 1]
    return P


def _rosenbrock(name, gamma, a_rows, c_rows, H, order, order_embedded) -> RosenbrockTableau:
    S = len(a_rows)
    a = _square(a_rows, S)
    C = _square(c_rows, S)
    m = a[S - 1].copy()
    m[S - 1] = 1.0
    e = np.zeros(S)
    e[S - 1] = 1.0
    return RosenbrockTableau(name, S=S, gamma=gamma, a=a, C=C, m=m, e=e,
                             P=_rosenbrock_dense(m, H), order=order,
                             order_embedded=order_embedded)


@functools.lru_cache(maxsize=None)
def get_rosenbrock(name: str) -> RosenbrockTableau:
    """The Rosenbrock tableau of a method (cached).

    Parameters
    ----------
    name : str
        One of `ROSENBROCK`.

    Returns
    -------
    RosenbrockTableau

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name == "rodas5p":
        return _rosenbrock("rodas5p", _RODAS5P_GAMMA, _RODAS5P_A, _RODAS5P_C, _RODAS5P_H,
                           order=5, order_embedded=4)
    if name == "rodas4":
        return _rosenbrock("rodas4", _RODAS4_GAMMA, _RODAS4_A, _RODAS4_C, _RODAS4_H,
                           order=4, order_embedded=3)
    raise ValueError(f"name must be one of {ROSENBROCK}, got {name!r}")


# ---------------------------------------------------------------------------------------
# Variable-order multistep methods: the numerical differentiation formulas (NDF) of
# Shampine & Reichelt, "The MATLAB ODE Suite", SIAM J. Sci. Comput. 18 (1997), in the
# quasi-constant step-size form of scipy.integrate.BDF (the differences array D of
# backward differences of the solution scaled to the current step h; a change of step
# multiplies D[:q+1] by (R U)^T). Order q = 1..5; the corrector at order q solves
#
#     y_new = y_pred + d,   (1 - kappa_q) gamma_q d = h f(y_new) - sum_{j=1..q} gamma_j D_j
#
# with y_pred = sum_{j=0..q} D_j, gamma_j = sum_{i<=j} 1/i, by simplified Newton with
# W = I - (h / alpha_q) J, alpha_q = (1 - kappa_q) gamma_q; the local error estimate is
# error_const[q] * d, error_const[q] = kappa_q gamma_q + 1/(q + 1). kappa: Shampine &
# Reichelt's Table 1 (the same values as scipy.integrate.BDF; kappa_5 = 0: order 5 is BDF5).
# ---------------------------------------------------------------------------------------

MULTISTEP = ("bdf",)

_NDF_KAPPA = (0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0)


@dataclass(frozen=True)
class MultistepMethod:
    """Coefficients of a variable-order NDF/BDF method.

    The numerical differentiation formulas of Shampine and Reichelt in the quasi-constant
    step-size form of ``scipy.integrate.BDF``. Arrays of shape ``(max_order + 1,)`` are
    indexed by the order ``q = 0 .. max_order`` (index 0 unused, but ``gamma[0] = 0``).

    Parameters
    ----------
    name : str
        The method, one of `MULTISTEP`.
    max_order : int
        The highest order.
    kappa : ndarray of float64, shape (max_order + 1,)
        NDF coefficients (Shampine and Reichelt's Table 1; ``kappa_5 = 0``: order 5 is BDF5).
    gamma : ndarray of float64, shape (max_order + 1,)
        ``gamma_q = sum_{i<=q} 1/i``.
    alpha : ndarray of float64, shape (max_order + 1,)
        ``(1 − kappa_q) gamma_q``.
    error_const : ndarray of float64, shape (max_order + 1,)
        ``kappa_q gamma_q + 1/(q + 1)``: the local error is ``error_const[q] * d``.
    newton_maxiter : int, optional
        Most Newton iterations per step (scipy's BDF: 4). The fifth pays on wider networks,
        where the Hessian a failed iteration asks for costs many flows (docs/integrators.md).
    newton_kappa : float, optional
        Newton stops once its correction times its convergence rate is this fraction of
        what the error test allows (CVODE's test).
    min_growth : float, optional
        At an unchanged order, a step grows only by at least this factor (smaller growth
        is not worth new LU factors; CVODE's THRESH).
    min_factor, max_factor : float, optional
        Bounds on the factor of a step change (as in ``scipy.integrate.BDF``).
    jacobian_every : int, optional
        A lane's Jacobian is evaluated anew after this many accepted steps (CVODE's msbj,
        51 there), besides when its Newton iteration fails; 0: only then.
    """

    name: str
    max_order: int
    kappa: np.ndarray
    gamma: np.ndarray
    alpha: np.ndarray
    error_const: np.ndarray
    newton_maxiter: int = 5
    newton_kappa: float = 0.01
    min_growth: float = 1.2
    min_factor: float = 0.2
    max_factor: float = 10.0
    jacobian_every: int = 40


@functools.lru_cache(maxsize=None)
def get_multistep(name: str) -> MultistepMethod:
    """The coefficients of a multistep method (cached).

    Parameters
    ----------
    name : str
        One of `MULTISTEP`.

    Returns
    -------
    MultistepMethod

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name != "bdf":
        raise ValueError(f"name must be one of {MULTISTEP}, got {name!r}")
    q = 5
    kappa = np.array(_NDF_KAPPA)
    gamma = np.concatenate(([0.0], np.cumsum(1.0 / np.arange(1, q + 1))))
    alpha = (1.0 - kappa) * gamma
    error_const = kappa * gamma + 1.0 / np.arange(1, q + 2)
    return MultistepMethod("bdf", q, kappa, gamma, alpha, error_const)
