"""Neural-network representations of rho, optimised by automatic differentiation (torch, float64).

  * 'nn':  rho_a = omega_a softplus(f_a), f the output (one value per grid point) of a
    network fed a constant input, with ``depth`` hidden layers of width 64 (``activation``
    'linear', i.e. none, or 'elu'). Depth 0 is the "list" representation: f is a free vector.
  * 'p2p': rho(omega) = omega softplus(net(omega / scale)), a point-to-point network (ELU
    layers; scale = omega_max / 5 by default, see below).
rho >= 0 and rho(0) = 0 hold by construction.

Loss: chi^2 (whitened; the full covariance when given) + smooth R + l2 ||weights||^2 (network
weights only; the list has none), with the smoothness regulator R chosen by ``smoothness``:
  * 'rho' (default): sum_a (rho_{a+1} - rho_a)^2;
  * 'log': sum_a (f_{a+1} - 2 f_a + f_{a-1})^2, the curvature of the network output f, which
    is log(rho / omega) wherever rho is small (softplus f ~ e^f). It damps ripples in the
    tails, and a Gaussian peak has constant log-curvature: the prior MEM's rho = m exp(...)
    carries. Measured at smooth = 1e3 (2 noise seeds; sum (Delta rho)^2, 'log' / 'rho' / MEM):
    it beats 'rho' on all 12 N_p = 100 cells and MEM on 9 (two-BW exact 0.14 / 0.38 / 0.71,
    noisy 0.23 / 0.53 / 1.23; BW 0.027 / 0.28 / 0.089 and 0.042 / 0.38 / 1.45; Lorentzian
    0.30 / 2.10 / 1.91; narrow BW 15.2 / 25.2 / 16.9; MEM is better on the exact Gaussian and
    two Gaussians, 0.021 / 0.15 / 0.0006 and 1.36 / 1.66 / 0.95), but it loses to 'rho' on
    most N_p = 25 cells (Gaussian, eps 1e-4:
    1.30 / 0.20 / 0.068; two BW, eps 1e-3: 3.8 / 2.6 / 2.1), where fitting longer lowers chi^2
    and raises the error (Gaussian, eps 1e-4: chi^2/N 1.5 -> 0.67, error 1.4 -> 3.5). It is
    offered, not the default; the benchmark runs it as 'nn-log'.

The MEM figures quoted in this docstring for noisy data came from the earlier MEM solver, whose
Newton iteration stalled on precise data (see mem.py); on exact data it had converged and
they stand. The converged MEM's figures are in benchmarks/reference/spectral.md.

Schedule and early stopping on chi^2. The fit runs in stages. A stage runs the optimiser in
chunks of 250 iterations until the loss stops improving (relative decrease < ``rtol`` over a
chunk) or ``iters`` iterations. After a stage, if chi^2 is still above the discrepancy
target N_p + 2 sqrt(2 N_p) (doubled for a member fitted to resampled data), both regulator
weights are relaxed tenfold and a new stage starts from where the last ended, at most
``stages`` times; a relaxation that neither reaches the target nor lowers chi^2 by at least
2 sqrt(2 N_p) (or that diverges) is undone and ends the fit (the data cannot be fitted better
on this grid, e.g. because of the truncated tail, and relaxing further would fit noise).
With network weights and l2 > 0, a last fine-tuning stage drops the L2 term. The iteration
count is part of the regularisation: the list started at f = f0 = -3 (rho = 0.049 omega) and
stopped on the loss plateau lands near the truth well before the unregularised optimum,
which is ~2x worse on the benchmark.

Selecting the smoothness per data set was tried and is not used. The Laplace evidence of the
quadratic regulator (log det of A^T A + smooth D^T D at the fit, as MEM marginalises alpha),
over a warm-started continuation smooth = 1e3 .. 1e-3 on one noise seed of cells where the
list trails MEM, picked smooth = 10 to 1000 and gave sum (Delta rho)^2 of 26.3 (narrow BW,
N_p 100 exact; best over the scan 8.7 at 1e-3), 0.41 (BW exact; best 0.36), 3.29 (two BW,
N_p 25, eps 1e-3; best 0.17 at 1e-3), 0.73 (BW, N_p 25, eps 1e-4; best 0.32), 0.20 (Gaussian,
N_p 25, eps 1e-5; best 0.09). Where the error is smallest chi^2 barely moves, so neither the
evidence nor a chi^2 criterion finds that point.

Fitting further is not better either. Where the stages end on the ``iters`` cap with chi^2
far above the target (N_p = 25, eps = 1e-5: the point at p = 0.001 has sigma ~ 3e-9), four
times the iterations per stage (20000) gave, over seeds 0-2 (sum (Delta rho)^2, chi^2/N):
BW eps 1e-5 0.51 -> 0.43, chi^2/N 33 -> 1.4 (MEM 0.33); Gaussian eps 1e-5 0.28 -> 0.17; two BW
eps 1e-4 1.25 -> 1.25; but narrow BW eps 1e-4 12.1 -> 17.2 while chi^2/N fell 10.8 -> 3.3 (the
closer fit rings around the narrow peak), at up to 2.4x the time. Not adopted.

Optimiser. 'lbfgs' (default): the whitened chi^2 is extremely stiff (the kernel's singular
values span ~15 decades), and measured on the two-BW benchmark case Adam had not brought
chi^2/N below 1e6 after 8000 steps while L-BFGS with a strong-Wolfe line search fits in a
few thousand iterations. 'adam': Adam with the same loss and schedule, learning rate ``lr``
(10x smaller in the fine-tuning stage), as in the published approach.
Levenberg-Marquardt (Gauss-Newton with Marquardt's damping, solved in the space of grid
functions through the network's tangent kernel and an SVD, so the stiff directions are exact)
was tried on both representations and not adopted. On precise data it fits no better: p2p,
BW at eps = 1e-5, chi^2/N 1.5e4 against L-BFGS's 1.2e4 (both before the warm-up below); on
the list it stalls where softplus flattens (BW, eps = 1e-5, chi^2/N 5e3 against L-BFGS's 13),
though it fits the Lorentzian at eps = 1e-5 to chi^2/N 0.8 in 4 s where L-BFGS ends at 114
(seed 0, default settings otherwise).

P2P input scale: the point network is fed omega / ``scale``, by default omega_max / 5 (4 on
the benchmark's grid, which ends at 20). The default assumes, as on the benchmark, that the
grid extends a few times beyond the spectral features, so it scales with the grid in any
units. With PyTorch's
initialisation the first layer's ELU kinks sit at -b/w with b, w ~ U(-1, 1), mostly within
|x| < 2, and the network bends easily only there; the input unit must put the features
(omega ~ 2-6 on the benchmark) in that range. Measured on seed 0, sum (Delta rho)^2 at
scale 1 / 2 / 4 / 8 ('-': not measured; in brackets the earlier scale = omega_max = 20, a
3-seed mean; the 3-seed means at scale 4 are in benchmarks/reference):
Gaussian eps 1e-3 0.33 / - / 0.11 / - (11.2; 1.03 at scale 0.25); two Gaussians eps 1e-3
18.5 / - / 14.7 / - (27.8); BW eps 1e-3 1.78 / 1.91 / 2.18 / 1.99 (4.5); Lorentzian eps 1e-3
4.34 / 3.83 / 4.28 / 3.07 (7.5); two BW N_p = 100 noisy 1.31 / 0.47 / 0.41 / 1.13 (1.67); narrow
BW eps 1e-3 34.4 / 34.1 / 33.8 / 35.8 (49.8). At omega_max the fits stalled far above the
data (chi^2/N 2.3-12 at eps 1e-2, 68-1640 at 1e-3). Where the features sit far below omega_max / 5,
set ``scale`` near their frequency.
The scale and smoothness figures here were measured before the warm-up below, when p2p stalled
at eps <= 1e-4. The smoothness weight, retuned then at scale 4 on seed 0 (smooth 10 / 100 /
1000): BW eps 1e-3 2.14 / 2.18 / 2.15, two Gaussians eps 1e-3 11.7 / 14.7 / 12.4, two BW
N_p = 100 noisy 0.49 / 0.41 / 1.21, Lorentzian eps 1e-4 3.54 / 3.8 (3-seed mean) / 5.03: no value
is better throughout, 100 stays.

Warm-up (``warmup``: True for p2p, 'auto' for the list). On the N_p = 25 protocol the point
at p = 0.001 has sigma = eps D p / 0.8, about 1e-3 of its neighbours' (D(0) = int rho / (pi omega) domega, known
to 1.25e-8 relative at eps = 1e-5), so its whitened row is ~1e3 times the others. From its
random start p2p fitted that point first and then could not move: on BW at eps = 1e-5 (seed 0,
one member) L-BFGS's line search found no decrease through every relaxation (chi^2 3.66e5, i.e.
chi^2/N 1.5e4, residuals of 100-200 sigma at the other points), while the same fit without that
point reached chi^2/N 1.06. Restarts from other initialisations (two more, the lowest chi^2
kept) had helped little at 3-4x the time, and Levenberg-Marquardt stalled as well. So each
member first fits its data (resample included) weighed by the softened covariance C + q^2 1,
q^2 the median variance, which caps the rows' range without changing the data, and then, from
there, the data with their own covariance and the same schedule, target and stopping rules
(chi^2 under the softened covariance is the smaller, so the warm-up stops the earlier);
``diagnostics['warmup_history']`` holds the warm-up's stages. sum (Delta rho)^2 of p2p without ->
with the warm-up (means over 20 seeds -> over 3, other seed counts in brackets; MEM's 20-seed
mean in parentheses), N_p = 25:
  eps 1e-3: BW 2.02 -> 1.36 (0.96), two BW 3.67 -> 2.71 (3.41), narrow BW 33.2 -> 31.0 [20] (29.5),
    Gaussian 0.11 -> 0.26 (0.55), two Gaussians 13.5 -> 9.8 (17.2), Lorentzian 3.61 -> 3.84 (4.48);
  eps 1e-4: BW 1.86 -> 0.51 (0.74), two BW 3.19 -> 1.00 (2.45), narrow BW 31.9 -> 26.4 [20] (24.9),
    Gaussian 0.21 -> 0.027 (0.13), two Gaussians 10.5 -> 3.7 (7.0), Lorentzian 3.78 [3] -> 2.98 (3.14);
  eps 1e-5: BW 1.86 -> 0.10 (0.33), two BW 3.20 -> 0.19 (1.11), narrow BW 32.1 -> 13.9 (18.9),
    Gaussian 0.18 -> 0.0041 (0.010), two Gaussians 9.9 [3] -> 1.01 (1.03), Lorentzian 3.01 [3] -> 2.16 (2.20);
and chi^2/N went from 8.5 - 3.7e4 to 0.64 - 2.2 on those eps 1e-4 and 1e-5 cells (narrow BW at eps
1e-5: 12). On the other cells it moves within the spread over seeds or either way: N_p = 100
exact BW 0.070 -> 0.141, two BW 0.38 -> 0.53, narrow BW 14.5 -> 17.6, Gaussian 0.0145 -> 0.0076,
two Gaussians 1.25 -> 1.66, Lorentzian 2.79 -> 1.94; noisy BW 0.16 -> 0.09, two BW 0.58 -> 0.69,
Lorentzian 1.56 -> 2.05. With the warm-up, at 20 seeds on every cell
(benchmarks/reference/spectral.md), p2p reads at eps 1e-3 / 1e-4 / 1e-5: BW 1.29 / 0.50 /
0.098, two BW 2.82 / 0.94 / 0.34, narrow BW 31.0 / 26.4 / 16.3, Gaussian 0.28 / 0.025 / 0.0052,
two Gaussians 11.1 / 3.79 / 1.08, Lorentzian 3.70 / 2.41 / 1.70: 21 of the 30 cells at
eps <= 1e-3 no worse than MEM, 1 within errors.
The list fits the stiff point through its grid values near omega_0, but on precise data it too
ended far above the target (20-seed benchmark, eps = 1e-5: chi^2/N 46 on BW, 90 on two
Gaussians, 130 on the Lorentzian, 924 on the narrow BW). Always on,
the warm-up costs it the regularisation its early stop provides (3 seeds: BW N_p = 25 eps 1e-3
0.58 -> 1.97, eps 1e-4 0.46 -> 1.25, N_p = 100 exact 0.28 -> 0.44, two BW exact 0.38 -> 0.54).
So the list's default is warmup='auto': a member whose plain fit ends above its discrepancy
target is fitted again, from the same initialisation and the same resample, after the warm-up,
and the refit is kept if it meets the target (``diagnostics['warmup_tried']`` marks the members
refitted). Keeping any refit with a lower chi^2, as first done, let a few members of the narrow
BW at eps = 1e-5, where no fit on this grid meets the target (chi^2/N 150-2000), trade a 5 %
lower chi^2 for a spike: sum (Delta rho)^2 of the member 12 -> 264 (seed 3; the peak 13.2
against 3.8), and 79, 51, 71 for the ensembles of seeds 3, 15, 19 against 7-16 for the other
17. Every refit that helped met the target (seeds 0-2 of BW, two BW, two Gaussians and the
Lorentzian at eps 1e-4 and 1e-5); every one kept that did not was worse (the narrow BW's above;
two Gaussians eps 1e-5 seed 1, 2.9 -> 13.7). Where every member meets its target nothing
changes, bit for bit: on noise seeds 0-4 of BW and two BW every member did at eps = 1e-2 and
N_p = 100 but one (BW, N_p = 100, seed 0).
The N_p = 25 cells at eps <= 1e-3 and the N_p = 100 noisy cells were rerun. sum (Delta rho)^2
of nn / nn-log without -> with 'auto' (20 seeds -> 3; MEM):
  eps 1e-4: BW 0.46 -> 0.22 / 0.73 -> 0.29 (0.74), Lorentzian 3.59 -> 2.33 / 3.68 -> 2.28 (3.14),
    two Gaussians 5.35 -> 5.18 / 8.35 -> 3.40 (7.04), Gaussian 0.080 -> 0.20 / 1.18 -> 0.96 (0.13);
  eps 1e-5: BW 0.68 -> 0.33 / 0.74 -> 1.01 (0.33), two BW 1.29 -> 0.43 / 1.35 -> 0.42 (1.11),
    Gaussian 0.34 -> 0.19 / 0.80 -> 0.52 (0.010), two Gaussians 3.44 -> 2.87 / 3.55 -> 2.84 (1.03),
    Lorentzian 3.72 -> 2.14 / 3.17 -> 0.75 (2.20), narrow BW 11.3 -> 12.3 / 8.85 -> 12.3 (18.9);
and on the eps = 1e-3 cells within the spread over seeds (BW 0.58 -> 0.64, two BW 3.39 -> 2.58,
Lorentzian 4.45 -> 3.98). A refit costs a second fit: these cells took 12-90 s per data set
beside other work, against 5-44 s. Against MEM at eps <= 1e-3 (benchmarks/reference/spectral.md)
the neural methods went from 18 / 17 / 10 cells of 30 no worse (nn / nn-log / p2p) to 20 / 21 /
22, and at least one of them is no worse than MEM on every cell but the exact-data N_p = 100 narrow
BW, Gaussian and two Gaussians (see below). At 20 seeds (benchmarks/reference/spectral.md; the
narrow BW and two Gaussians at eps 1e-4 and 1e-5 under the rule that a refit must meet the
target) nn reads BW 0.58 / 0.49 / 0.355 at eps 1e-3 / 1e-4 / 1e-5 (MEM 0.96 / 0.74 / 0.325),
Lorentzian 4.45 / 2.41 / 2.59 (4.48 / 3.14 / 2.20), narrow BW 29.2 / 11.2 / 11.3 (29.5 / 24.9 /
18.9), two Gaussians 12.2 / 4.79 / 2.11 (17.2 / 7.04 / 1.03): 20 of the 30 cells no worse than MEM.
nn-log at 20 seeds under that rule reads BW 0.84 / 0.35 / 1.95, two BW 3.57 / 2.40 / 0.42 (MEM
3.41 / 2.45 / 1.11), narrow BW 26.5 / 15.9 / 13.5, Gaussian 1.01 / 1.06 / 0.39 (0.55 / 0.13 /
0.010), two Gaussians 16.8 / 3.35 / 2.95, Lorentzian 3.82 / 2.23 / 0.72: 21 of 30 no worse,
as at 3 seeds, though its BW at eps 1e-5 went from 1.01 (3 seeds) to 1.95 +- 0.59.

Defaults (measured on benchmarks/bench_spectral.py): depth 0 (the list), smooth = 100,
f0 = -3, rtol = 1e-3, iters = 5000 per stage, 4 stages, an ensemble of 2, warmup='auto'; p2p:
depth 3, width 64, scale omega_max / 5, smooth = 100, l2 = 1e-3, iters = 2000 per stage, the
warm-up.

Band: an ensemble of ``n_ensemble`` fits, each on the data resampled within its errors
(b + z in whitened form; p2p's networks also from their own initialisation, while every
member of the list starts from the same f0); rho is the ensemble mean. Each member responds
to its resample as the fit responds to the data's own noise, so the members' standard
deviation estimates the spread of one fit over noise realisations; the mean carries 1/n of
the members' resampling noise besides, and the band is that standard deviation times
sqrt(1 + 1/n) (no band for n_ensemble = 1; with resample=False the plain standard deviation,
which then measures the initialisations only). With the default 2 members it is an estimate
with one degree of freedom: between fits of the same data it scatters by a factor of 2-3,
and its mean is 0.80 of the spread it estimates. Over 20 noise seeds the members' plain
standard deviation was 0.53-0.65 of the actual spread of the returned rho (BW at N_p = 25,
eps = 1e-3; two BW at N_p = 100; 1.04-1.31 with 8 members on 6 seeds), which sqrt(3/2) and
the 0.80 account for. The band does not contain the regularisers' bias, which on most
benchmark cells is larger than the spread (coverage of the truth 22-77 %).
A central member fitted to the data themselves, with the band from resampled members around
it, was tried on the six exact-data cells (N_p = 100): sum (Delta rho)^2 BW 0.281 -> 0.34, two
BW 0.384 -> 0.47, narrow BW 25.2 -> 22.8, Gaussian 0.147 -> 0.105, two Gaussians 1.66 -> 1.64,
Lorentzian 2.1 -> 1.8; relaxing it further while chi^2 halved (a chi^2 kink, as MEM's alpha)
made it worse (0.71, 0.46, 19.4, 0.27, 11.6, 4.4): on exact data the list's error is set by
its regulator, not by where the fit stops. Not adopted.
The same on the three exact cells where every neural method trails MEM (one member fitted to
the data themselves from seed 0, the regulators relaxed tenfold per stage without a target):
p2p's L-BFGS stops at chi^2/N 7e-5 (Gaussian), 1e-3 (two Gaussians), 4e-3 (narrow BW) with
sum (Delta rho)^2 0.0066, 0.54, 21.9 (benchmark 0.0076, 1.66, 17.6; MEM 8e-6, 0.046, 9.89);
'log' smoothness relaxed from 1e3 to 1e-3 takes the narrow BW from 15.3 to 6.7 (at 1e-2) but
the Gaussian from 0.016 to 0.33 and the two Gaussians from 1.24 to 13.8 while chi^2 keeps
falling, so no rule on chi^2 finds the good stage for all three.
Measured before the warm-up: on the cells where the list trailed MEM (eps <= 1e-3) its error
was mostly bias, and more members did not close the gap. sum (Delta rho)^2 of the mean of the
first 1 / 2 / 4 / 8 members (MEM in brackets), averaged over noise seeds 0-3 at N_p = 25 (one
data set on the exact N_p = 100 cells):
N_p = 25, eps 1e-5: BW 0.53 / 0.43 / 0.44 / 0.52 (0.33), two BW 1.12 / 1.28 / 1.16 / 1.13 (1.11),
Gaussian 0.49 / 0.26 / 0.33 / 0.34 (0.010), two Gaussians 2.70 / 2.81 / 2.77 / 3.02 (1.03);
Lorentzian eps 1e-4, seeds 0-2 only, 3.44 / 3.24 / 3.42 / 3.52 (3.14); N_p = 100 exact: narrow BW
25.5 / 25.2 / 24.0 / 23.5 (9.89), Gaussian 0.18 / 0.15 / 0.086 / 0.099 (8e-6), two Gaussians 1.92 /
1.66 / 1.04 / 0.92 (0.046): there 8 members halve the error and still end 2-10^4 times above MEM.
A single member fitted to the data themselves (no resampling), seeds 0-3, against the default
ensemble of 2 on the same seeds: BW eps 1e-5 0.65 (0.43), two BW 1.13 (1.28), Gaussian 0.37
(0.26), two Gaussians 4.84 (2.81), Lorentzian eps 1e-4 3.63 (3.38), eps 1e-5 4.12 (3.94).
What MEM has there is a prior that suits these shapes: at precise data its solution
rho = m exp(-A^T lam / (alpha dw)) (mem.py) has ln(rho / m) in the span of the kernel's N_p rows,
and on the three exact-data cells where the list trails its chi^2 kink fits to chi^2/N 1e-13 ..
1e-7 (the exact Gaussian is all but recovered), where the list stops below the discrepancy target
(chi^2/N 0.02-0.3) with its regulator's shape. On the N_p = 25 Gaussian at eps 1e-5 the list fits
(chi^2/N 1.3) with a peak too tall and narrow (+0.14 in height, -0.21 in FWHM;
benchmarks/reference/spectral.md).
A prior that is zero on any Gaussian was tried as well, and not adopted: the list with
rho = omega exp(f) and the regulator smooth * sum (third difference of ln rho)^2, fitted by
Levenberg-Marquardt (Gauss-Newton with Marquardt's damping; the Jacobian A diag(rho) is exact,
so the fit converges where L-BFGS stalls; damping mu diag(H), mu / 3 on an accepted step, x 4
on a rejected one) from f = -3 along smooth = 1e5, 1e4, ..., 1e-2, up to 2000 steps a weight,
each weight warm-started from the last, one fit of the data themselves (seed 0). On the
exact N_p = 100 cells it ties MEM where the list trailed: Gaussian 9.25e-6 at every weight
(MEM 8.14e-6), two Gaussians 0.12 / 0.048 / 0.037 at smooth 100 / 10 / 1 (MEM 0.046), narrow
BW 11.3 / 10.2 / 9.91 (MEM 9.89); and beats it on the others at smooth 100: BW 0.042 (0.042),
two BW 0.11 (0.64), Lorentzian 0.48 (1.25), each getting worse at smaller weights (BW 0.15 at
0.01). These ties sit on a floor: under the grid's forward map the truth itself has chi^2/N
0.046 (Gaussian), 0.071 (two Gaussians), 0.18 (narrow BW), so a fit to chi^2/N 1e-13 (MEM's,
and these) fits the quadrature's error, and sum (Delta rho)^2 below ~1e-5 on the Gaussian, or
a 1 % difference on the narrow BW, says nothing about the prior. No one weight serves all six
(the Gaussians want it small, the Breit-Wigners 100), and no rule on chi^2 tells them apart. On
noisy data the first weight already meets the discrepancy target (N_p = 100 noisy, seed 0:
two BW 0.15, MEM 2.30; Gaussian 0.0048, 0.145; Lorentzian 0.92, 3.03). At N_p = 25 the fit
from the flat start crawls (accepted steps of ~1e-2 in f): at eps 1e-3, capped at 500 steps a
weight, the Gaussian ended at chi^2/N 15-84 (4.1-6.5, MEM 0.55) and the two Gaussians at 4-9
(27, MEM 17.2), while BW met its target at 2.4 (MEM 0.96); uncapped, the Gaussian at smooth
1e4 reaches chi^2 13.9 (target 39) and 0.13 in 4500 steps (~25 s). A lead for the N_p = 100
protocols, not a method yet.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg

from .._kernels import check_int
from .classical import discrepancy_target
from .problem import Problem, Reconstruction, check_positive

__all__ = ["nn", "p2p"]


def _rho(omega, f):
    """rho = omega softplus(f): both representations map their output f to rho this way."""
    return omega * torch.nn.functional.softplus(f)


class ListNet(torch.nn.Module):
    """f from a constant input through ``depth`` hidden layers (depth 0: f is the parameter)."""

    def __init__(self, n_out: int, depth: int, width: int, activation: str, f0: float = 0.0):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= 3:
            raise ValueError(f"depth must be an integer in 0..3, got {depth!r}")
        if activation not in ("linear", "elu"):
            raise ValueError(f"activation must be 'linear' or 'elu', got {activation!r}")
        if depth == 0:
            self.f = torch.nn.Parameter(torch.full((n_out,), float(f0), dtype=torch.float64))
            self.net = None
        else:
            layers, d_in = [], 1
            for _ in range(depth):
                layers.append(torch.nn.Linear(d_in, width, dtype=torch.float64))
                if activation == "elu":
                    layers.append(torch.nn.ELU())
                d_in = width
            layers.append(torch.nn.Linear(d_in, n_out, dtype=torch.float64))
            with torch.no_grad():
                layers[-1].bias += f0
            self.net = torch.nn.Sequential(*layers)
        self.register_buffer("one", torch.ones(1, 1, dtype=torch.float64))

    def logits(self, omega):
        return self.f if self.net is None else self.net(self.one)[0]

    def forward(self, omega):
        return _rho(omega, self.logits(omega))


class PointNet(torch.nn.Module):
    def __init__(self, depth: int, width: int, scale: float):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 4:
            raise ValueError(f"depth must be an integer in 1..4 for p2p, got {depth!r}")
        layers, d_in = [], 1
        for _ in range(depth):
            layers += [torch.nn.Linear(d_in, width, dtype=torch.float64), torch.nn.ELU()]
            d_in = width
        layers.append(torch.nn.Linear(d_in, 1, dtype=torch.float64))
        self.net = torch.nn.Sequential(*layers)
        self.scale = scale  # the input is omega / scale (see p2p)

    def logits(self, omega):
        return self.net(omega[:, None] / self.scale)[:, 0]

    def forward(self, omega):
        return _rho(omega, self.logits(omega))


CHUNK = 250  # optimiser iterations between convergence checks


def _fit(model, A, b, omega, target, significant, *, optimizer, l2, smooth, stages, iters, lr, rtol,
         smoothness="rho"):
    """Fit one member to whitened data b. Stage k weighs the regulators by 10^-k; a stage ends
    when the loss stops improving (relative decrease < rtol over CHUNK iterations) or after
    ``iters`` iterations; the stages stop as soon as chi^2 <= target (early stopping on chi^2),
    or when a relaxation neither reaches the target nor lowers chi^2 by ``significant`` (undone).
    With network weights and l2 > 0, a fine-tuning stage without the L2 term follows."""
    A = torch.as_tensor(A)
    bt = torch.as_tensor(b)
    weights = [p for n, p in model.named_parameters() if "bias" not in n and n != "f"]
    history = []

    def terms(smooth_now, l2_now):
        f = model.logits(omega)  # one network pass serves rho and the 'log' regulator
        rho = _rho(omega, f)
        r = A @ rho - bt
        chi2 = r @ r
        if smoothness == "rho":
            loss = chi2 + smooth_now * ((rho[1:] - rho[:-1]) ** 2).sum()
        else:
            loss = chi2 + smooth_now * ((f[2:] - 2 * f[1:-1] + f[:-2]) ** 2).sum()
        if l2_now > 0 and weights:
            loss = loss + l2_now * sum((w * w).sum() for w in weights)
        return loss, chi2

    chunk = min(CHUNK, iters)

    def stage(smooth_now, l2_now, lr_now):
        if optimizer == "lbfgs":
            opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=chunk, history_size=50,
                                    line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)

            def closure():
                opt.zero_grad()
                loss, _ = terms(smooth_now, l2_now)
                loss.backward()
                return loss

            step = lambda: opt.step(closure)  # noqa: E731  (the optimiser's state persists across chunks)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=lr_now)

            def step():
                for _ in range(chunk):
                    opt.zero_grad()
                    loss, _ = terms(smooth_now, l2_now)
                    loss.backward()
                    opt.step()

        previous = None
        for _ in range(-(-iters // chunk)):
            step()
            with torch.no_grad():
                loss, chi2 = (float(v) for v in terms(smooth_now, l2_now))
            history.append((smooth_now, l2_now, chi2, loss))
            if not np.isfinite(loss) or (previous is not None and previous - loss < rtol * abs(loss)):
                break
            previous = loss
        return chi2

    chi2 = stage(smooth, l2, lr)
    k = 0
    while chi2 > target and k + 1 < stages:
        # Relax the regulators tenfold only while that buys a significant drop in chi^2: when
        # the data cannot be fitted on this grid (a truncated tail, say) chi^2 stays above the
        # target whatever the weight, and relaxing further would only fit noise.
        saved = {n: v.clone() for n, v in model.state_dict().items()}
        relaxed = stage(smooth * 10.0 ** -(k + 1), l2 * 10.0 ** -(k + 1), lr)
        if not (relaxed <= target or chi2 - relaxed >= significant):  # also undoes a diverged (NaN) stage
            model.load_state_dict(saved)
            history.append((smooth * 10.0 ** -k, l2 * 10.0 ** -k, chi2, float("nan")))  # nan: reverted here
            break
        chi2, k = relaxed, k + 1
    if l2 > 0 and weights:  # fine-tuning: the data term and the smoothness of the last stage only
        stage(smooth * 10.0 ** -k, 0.0, lr / 10)
    with torch.no_grad():
        rho = model(omega)
    return rho.numpy().copy(), history


def _softened(prob: Problem):
    """Cholesky factors of the data's covariance C (the problem's own) and of the warm-up's
    C + q^2 1, q^2 the median variance (module docstring: the warm-up)."""
    C = prob.cov if prob.cov is not None else np.diag(prob.sigma ** 2)
    return prob.L, np.linalg.cholesky(C + np.median(np.diag(C)) * np.eye(prob.n))


def _ensemble(make, prob: Problem, *, n_ensemble, seed, resample, warmup, **fit):
    check_int(n_ensemble, "n_ensemble")
    if isinstance(warmup, (bool, np.bool_)):
        warmup = bool(warmup)
    elif not (isinstance(warmup, str) and warmup == "auto"):
        raise ValueError(f"warmup must be True, False or 'auto', got {warmup!r} ({type(warmup).__name__})")
    if fit["optimizer"] not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {fit['optimizer']!r}")
    if fit["smoothness"] not in ("rho", "log"):
        raise ValueError(f"smoothness must be 'rho' or 'log', got {fit['smoothness']!r}")
    for name in ("stages", "iters"):
        check_int(fit[name], name)
    for name in ("smooth", "l2", "rtol"):
        if not (np.isfinite(fit[name]) and fit[name] >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {fit[name]!r}")
    omega = torch.as_tensor(prob.omega)
    rng = np.random.default_rng(seed)
    resampled = resample and n_ensemble > 1
    # Discrepancy target for one member, as in the classical methods: N_p + 2 sqrt(2 N_p), the
    # chi^2 the truth stays below at ~2 sigma; twice that when the member sees the data's noise
    # plus a resample of it (chi^2 of the truth then is 2 chi^2_{N_p}).
    factor = 2.0 if resampled else 1.0
    target = discrepancy_target(prob.n, None) * factor
    significant = 2.0 * np.sqrt(2.0 * prob.n) * factor  # 2 sigma of chi^2_{N_p}, doubled if resampled
    L = L_soft = A_soft = None
    if warmup:
        L, L_soft = _softened(prob)
        A_soft = linalg.solve_triangular(L_soft, prob.K, lower=True)

    def member(k, z, warm):
        """Member k's fit of data b + z, from its own initialisation; warm: after the warm-up on
        the same data (resample included) weighed by the softened covariance."""
        torch.manual_seed(seed + k)
        model, warm_hist = make(), None
        if warm:
            b_soft = linalg.solve_triangular(L_soft, prob.D + L @ z, lower=True)
            warm_hist = _fit(model, A_soft, b_soft, omega, target, significant, **fit)[1]
        b = prob.b + z
        rho, hist = _fit(model, prob.A, b, omega, target, significant, **fit)
        r = prob.A @ rho - b
        return rho, hist, warm_hist, float(r @ r)  # chi^2 against the data this member fitted

    rhos, histories, warmups, tried = [], [], [], []
    for k in range(n_ensemble):
        z = rng.standard_normal(prob.n) if resampled else np.zeros(prob.n)
        rho, hist, warm_hist, chi2 = member(k, z, warmup is True)
        refit = warmup == "auto" and chi2 > target  # the plain fit ended above the target: try the warm-up
        tried.append(warmup is True or refit)
        if refit:
            warm = member(k, z, True)
            # kept only where it meets the target: a refit that ends above it as well found no fit the
            # data allow, and its lower chi^2 was bought with spikes (module docstring, warm-up)
            if warm[3] <= target:
                rho, hist, warm_hist, chi2 = warm
        rhos.append(rho)
        histories.append(hist)
        warmups.append(warm_hist)
    rhos = np.array(rhos)
    band = rhos.std(0, ddof=1) if len(rhos) > 1 else None
    if band is not None and resampled:
        # the mean of the members carries, besides the data's noise (which each member's
        # resample mimics), 1/n of the members' own resampling noise (module docstring)
        band *= np.sqrt(1.0 + 1.0 / len(rhos))
    diag = {"members": rhos, "history": histories, "target_chi2": target}
    if warmup:  # per member: the warm-up's stages where the member kept it (else None), and whether it ran
        diag.update(warmup_history=warmups, warmup_tried=tried)
    return rhos.mean(0), band, diag


def nn(prob: Problem, *, depth: int = 0, width: int = 64, activation: str = "elu", f0: float = -3.0,
       optimizer: str = "lbfgs", smooth: float = 100.0, l2: float = 1e-2, stages: int = 4, iters: int = 5000,
       rtol: float = 1e-3, lr: float = 1e-3, n_ensemble: int = 2, resample: bool = True,
       seed: int = 0, smoothness: str = "rho", warmup: bool | str = "auto") -> Reconstruction:
    """The 'NN' representation rho_a = omega_a softplus(net(const)_a); defaults measured on the
    benchmark (see the module docstring)."""
    n = len(prob.omega)
    rho, band, diag = _ensemble(lambda: ListNet(n, depth, width, activation, f0), prob, n_ensemble=n_ensemble,
                                seed=seed, resample=resample, warmup=warmup, optimizer=optimizer, l2=l2,
                                smooth=smooth, stages=stages, iters=iters, rtol=rtol, lr=lr, smoothness=smoothness)
    diag.update(depth=depth, activation=activation, optimizer=optimizer, n_ensemble=n_ensemble)
    return Reconstruction(prob.omega, rho, prob.chi2(rho), prob.n, "nn", band, diag)


def p2p(prob: Problem, *, depth: int = 3, width: int = 64, scale: float | None = None,
        optimizer: str = "lbfgs", smooth: float = 100.0, l2: float = 1e-3, stages: int = 4, iters: int = 2000,
        rtol: float = 1e-3, lr: float = 1e-3, n_ensemble: int = 2, resample: bool = True, seed: int = 0,
        smoothness: str = "rho", warmup: bool | str = True) -> Reconstruction:
    """The 'NN-P2P' representation rho(omega) = omega softplus(net(omega / scale)). A network pass
    costs ~10x the list's, so ``iters`` per stage is 2000; a benchmark reconstruction (an
    ensemble of 2, each member with its warm-up) takes 20-100 s on one core. ``scale``: None for omega_max / 5."""
    if scale is None:
        if not prob.omega.max() > 0:
            raise ValueError("p2p needs a grid with omega_max > 0 for its default scale (omega_max / 5)")
        scale = float(prob.omega.max()) / 5.0
    scale = check_positive(scale, "scale")
    if not np.isfinite(float(prob.omega.max()) / scale):
        raise ValueError(f"scale is too small: omega_max / scale overflows, got {scale!r}")
    rho, band, diag = _ensemble(lambda: PointNet(depth, width, scale), prob, n_ensemble=n_ensemble, seed=seed,
                                resample=resample, warmup=warmup, optimizer=optimizer, l2=l2, smooth=smooth,
                                stages=stages, iters=iters, rtol=rtol, lr=lr, smoothness=smoothness)
    diag.update(depth=depth, scale=scale, optimizer=optimizer, n_ensemble=n_ensemble)
    return Reconstruction(prob.omega, rho, prob.chi2(rho), prob.n, "p2p", band, diag)
