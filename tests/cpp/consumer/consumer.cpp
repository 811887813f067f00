// Uses the installed headers and lftaccel::cpu as an outside lattice code would: the phi^4
// action of a constant field against its closed form, then HMC trajectories that must keep
// exp(-dH) near 1 and move the chains. Exit status 0 on success.
#include <cmath>
#include <cstdio>
#include <vector>

#include "lftaccel/cpu.hpp"

int main() {
  using namespace lftaccel;
  const int64_t ext[3] = {6, 5, 4};  // odd and even extents, d = 3
  const Lattice lat = make_lattice(3, ext);
  const int64_t V = lat.volume, batch = 4;
  const Phi4Site<double> site{0.15, 0.4};
  int failures = 0;

  // A constant field c has s(x) = -2 kappa d c^2 + (1 - 2 lam) c^2 + lam c^4 at every site.
  std::vector<double> x(batch * V), action(batch);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < V; ++i) x[b * V + i] = 0.3 * double(b + 1);
  cpu::phi4(lat, batch, x.data(), action.data(), nullptr, site, 0);
  for (int64_t b = 0; b < batch; ++b) {
    const double c = 0.3 * double(b + 1);
    const double exact = V * (-2 * site.kappa * 3 * c * c + (1 - 2 * site.lam) * c * c + site.lam * c * c * c * c);
    if (std::fabs(action[b] - exact) > 1e-12 * std::fabs(exact)) {
      std::printf("FAIL phi4 action of chain %lld: %.17g, exact %.17g\n", (long long)b, action[b], exact);
      ++failures;
    }
  }

  // HMC from the constant fields: at a small step every trajectory is accepted with |dH| small.
  std::vector<double> work(3 * batch * V), energies(4 * batch);
  std::vector<uint32_t> accepted(batch);
  double max_dh = 0;
  int moved = 0;
  for (uint64_t step = 0; step < 20; ++step) {
    cpu::hmc(lat, batch, x.data(), work.data(), energies.data(), accepted.data(), site,
             HmcSettings<double>{0.01, 50, 11u, 0u, step, true, true}, 0);
    for (int64_t b = 0; b < batch; ++b) {
      const double dh = energies[2 * batch + b] + energies[3 * batch + b] - energies[b] - energies[batch + b];
      max_dh = std::fmax(max_dh, std::fabs(dh));
      moved += int(accepted[b]);
    }
  }
  if (!(max_dh < 0.05) || moved < 70) {
    std::printf("FAIL hmc: max |dH| %.3g, %d of 80 trajectories accepted\n", max_dh, moved);
    ++failures;
  }
  std::printf("%s: lftaccel package consumer (openmp %d, max |dH| %.2g, %d/80 accepted)\n",
              failures ? "FAIL" : "PASS", int(cpu::has_openmp()), max_dh, moved);
  return failures ? 1 : 0;
}
