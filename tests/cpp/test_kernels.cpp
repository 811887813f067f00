// The contract for lattice codes that embed lftaccel: include the public
// headers, link lftaccel_cpu, call the CPU kernels on your own buffers.
// Checks each kernel against a naive loop written here, without Python.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "lftaccel/cpu.hpp"
#ifdef _OPENMP
#include <omp.h>
#endif
#include "lftaccel/fourier.hpp"
#include "lftaccel/mcmc.hpp"
#include "lftaccel/philox.hpp"

using namespace lftaccel;

static int failures = 0, n_checks = 0;

static void expect(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what);
  ++n_checks;
  if (!ok) ++failures;
}

static bool close(double a, double b, double tol) { return std::fabs(a - b) <= tol * (1 + std::fabs(b)); }

// Site index of coordinates c (row-major), wrapping each coordinate.
static int64_t index_of(const std::vector<int64_t>& ext, std::vector<int64_t> c) {
  int64_t idx = 0;
  for (size_t mu = 0; mu < ext.size(); ++mu) idx = idx * ext[mu] + ((c[mu] % ext[mu]) + ext[mu]) % ext[mu];
  return idx;
}

static std::vector<int64_t> coords_of(const std::vector<int64_t>& ext, int64_t idx) {
  std::vector<int64_t> c(ext.size());
  for (int mu = int(ext.size()) - 1; mu >= 0; --mu) {
    c[mu] = idx % ext[mu];
    idx /= ext[mu];
  }
  return c;
}

static double naive_phi4(const std::vector<int64_t>& ext, const double* x, int64_t V, double kappa, double lam) {
  double s = 0;
  for (int64_t i = 0; i < V; ++i) {
    auto c = coords_of(ext, i);
    double hop = 0;
    for (size_t mu = 0; mu < ext.size(); ++mu) {
      auto n = c;
      n[mu] += 1;
      hop += x[index_of(ext, n)];
    }
    s += -2 * kappa * x[i] * hop + (1 - 2 * lam) * x[i] * x[i] + lam * std::pow(x[i], 4);
  }
  return s;
}

static double naive_xy(const std::vector<int64_t>& ext, const double* t, int64_t V, double beta) {
  double s = 0;
  for (int64_t i = 0; i < V; ++i) {
    auto c = coords_of(ext, i);
    for (size_t mu = 0; mu < ext.size(); ++mu) {
      auto n = c;
      n[mu] += 1;
      s -= beta * std::cos(t[i] - t[index_of(ext, n)]);
    }
  }
  return s;
}

int main() {
  // Philox known answer (Random123 kat_vectors).
  {
    const Philox4x32 r = philox4x32_10(Philox4x32{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
                                       0xa4093822u, 0x299f31d0u);
    expect(r.v[0] == 0xd16cfe09u && r.v[1] == 0x94fdccebu && r.v[2] == 0x5001e420u && r.v[3] == 0x24126ea1u,
           "philox4x32_10 known answer");
  }

  // Uniform variates stay strictly inside (0, 1) at the extreme bit patterns.
  expect(uniform_float(0u) > 0.0f && uniform_float(0xffffffffu) < 1.0f &&
             uniform_double(0u, 0u) > 0.0 && uniform_double(0xffffffffu, 0xffffffffu) < 1.0,
         "uniform variates in the open interval (0, 1)");

  // The all-neighbours-at-once geometry (used by the GPU kernels) agrees with the
  // per-direction one, in 64-bit and 32-bit indices.
  {
    bool ok = true;
    const std::vector<std::vector<int64_t>> exts = {{1, 5, 2, 3}, {4, 1, 3, 2}, {2, 2, 2, 2}, {3, 7, 5, 6}};
    for (const auto& e : exts) {
      const Lattice lat = make_lattice(4, e.data());
      for (int64_t s = 0; s < lat.volume; ++s) {
        int64_t f[4], b[4];
        int f32[4], b32[4];
        lat.neighbours<4>(s, f, b);
        lat.neighbours<4>(int(s), f32, b32);
        for (int mu = 0; mu < 4; ++mu)
          ok &= f[mu] == lat.forward(s, mu) && b[mu] == lat.backward(s, mu) && f32[mu] == f[mu] &&
                b32[mu] == b[mu];
      }
    }
    auto check = [&](auto dim, std::vector<int64_t> e) {
      constexpr int D = decltype(dim)::value;
      const Lattice lat = make_lattice(D, e.data());
      for (int64_t s = 0; s < lat.volume; ++s) {
        int64_t f[D], b[D];
        int f32[D], b32[D];
        lat.neighbours<D>(s, f, b);
        lat.neighbours<D>(int(s), f32, b32);
        for (int mu = 0; mu < D; ++mu)
          ok &= f[mu] == lat.forward(s, mu) && b[mu] == lat.backward(s, mu) && f32[mu] == f[mu] && b32[mu] == b[mu];
      }
    };
    check(std::integral_constant<int, 1>{}, {1});
    check(std::integral_constant<int, 1>{}, {2});
    check(std::integral_constant<int, 1>{}, {7});
    check(std::integral_constant<int, 2>{}, {3, 4});
    check(std::integral_constant<int, 3>{}, {2, 1, 5});
    check(std::integral_constant<int, 3>{}, {3, 4, 2});
    expect(ok, "neighbours<D> equals forward/backward on every site");
  }

  // FastDivisor (the 32-bit neighbour arithmetic of the GPU kernels) equals integer
  // division for every divisor shape (1, powers of two and their neighbours, primes, the
  // largest extents) at small n, around multiples of d, at random n and at n = 2^31 - 1.
  {
    bool ok = true;
    std::mt19937_64 g(7);
    std::vector<int64_t> ds = {1, 2, 3, 5, 6, 7, 10, 12, 25, 31, 33, 100, 127, 129, 1000, 4095, 4097,
                               46340, 46341, 65535, 65536, 65537, 1000003, (int64_t(1) << 30) - 1,
                               int64_t(1) << 30, (int64_t(1) << 30) + 1, (int64_t(1) << 31) - 1};
    for (int k = 0; k < 200; ++k) ds.push_back(1 + int64_t(g() % ((uint64_t(1) << 31) - 1)));
    for (int64_t d : ds) {
      const FastDivisor f = FastDivisor::make(d);
      auto same = [&](int64_t n) { return n < 0 || n >= (int64_t(1) << 31) || int64_t(f.divide(uint32_t(n))) == n / d; };
      for (int64_t n = 0; n < 2000; ++n) ok &= same(n);
      for (int k = 0; k < 2000; ++k) {
        const int64_t q = int64_t(g() % uint64_t(((int64_t(1) << 31) - 1) / d + 1));
        ok &= same(q * d - 1) && same(q * d) && same(q * d + 1) && same(q * d + d - 1);
        ok &= same(int64_t(g() % (uint64_t(1) << 31)));
      }
      ok &= same((int64_t(1) << 31) - 1);
    }
    // and the neighbours in 32-bit indices on lattices with large extents, at random sites
    const std::vector<std::vector<int64_t>> big = {{46341, 46340}, {3, 700001}, {1031, 3, 1024, 5}, {65537, 2, 3}};
    for (const auto& e : big) {
      const Lattice lat = make_lattice(int(e.size()), e.data());
      for (int k = 0; k < 20000; ++k) {
        const int64_t s = k < 4 ? (k < 2 ? k : lat.volume - 1 - (k - 2)) : int64_t(g() % uint64_t(lat.volume));
        int64_t f[4], b[4];
        int f32[4], b32[4];
        if (e.size() == 2) { lat.neighbours<2>(s, f, b); lat.neighbours<2>(int(s), f32, b32); }
        else if (e.size() == 3) { lat.neighbours<3>(s, f, b); lat.neighbours<3>(int(s), f32, b32); }
        else { lat.neighbours<4>(s, f, b); lat.neighbours<4>(int(s), f32, b32); }
        for (size_t mu = 0; mu < e.size(); ++mu)
          ok &= f[mu] == lat.forward(s, int(mu)) && b[mu] == lat.backward(s, int(mu)) && f32[mu] == f[mu] &&
                b32[mu] == b[mu];
      }
    }
    // the checkerboard parity (the GPU Metropolis sweep's) in 32-bit indices, against coordinates
    for (const auto& e : std::vector<std::vector<int64_t>>{{4, 6}, {2, 8, 4}, {6, 2, 4, 2}, {46340, 46340}}) {
      const Lattice lat = make_lattice(int(e.size()), e.data());
      for (int k = 0; k < 5000; ++k) {
        const int64_t s = lat.volume <= 5000 ? k % lat.volume : int64_t(g() % uint64_t(lat.volume));
        int64_t sum = 0;
        for (int64_t c : coords_of(e, s)) sum += c;
        ok &= site_parity(lat, int(s)) == int(sum & 1) && site_parity(lat, s) == int(sum & 1);
      }
    }
    // 32-bit kernels only for a Lattice whose divisors make_lattice set, and a volume below 2^31
    {
      const int64_t small[2] = {6, 5}, large[2] = {int64_t(1) << 16, int64_t(1) << 15};
      Lattice by_hand;
      by_hand.ndim = 2;
      by_hand.extent[0] = 6;
      by_hand.extent[1] = 5;
      by_hand.stride[0] = 5;
      by_hand.stride[1] = 1;
      by_hand.volume = 30;
      ok &= make_lattice(2, small).int32_indices() && !make_lattice(2, large).int32_indices() &&
            !by_hand.int32_indices();
    }
    expect(ok, "FastDivisor equals integer division; 32-bit neighbours and parity on large lattices");
  }

  std::mt19937_64 gen(42);
  std::normal_distribution<double> normal(0.0, 1.5);

  // phi^4 and XY on lattices of every rank, including extent 2 and odd extents, and last
  // extents of one and two 64-byte vectors (the stencils' vector rows).
  const std::vector<std::vector<int64_t>> shapes = {{7}, {2, 3}, {5, 4, 3}, {3, 2, 5, 4}, {2, 2, 2, 2},
                                                    {16}, {3, 8}, {2, 3, 16}, {2, 2, 3, 8}};
  for (const auto& ext : shapes) {
    const Lattice lat = make_lattice(int(ext.size()), ext.data());
    const int64_t batch = 2, V = lat.volume;
    std::vector<double> x(batch * V), action(batch), grad(batch * V);
    for (auto& v : x) v = normal(gen);

    const Phi4Site<double> p{0.23, 0.7};
    cpu::phi4(lat, batch, x.data(), action.data(), grad.data(), p, 2);
    bool ok = true;
    for (int64_t b = 0; b < batch; ++b) ok &= close(action[b], naive_phi4(ext, x.data() + b * V, V, 0.23, 0.7), 1e-12);
    expect(ok, ("phi4 action, rank " + std::to_string(ext.size())).c_str());
    // Gradient against central differences of the kernel's own action.
    ok = true;
    const double h = 1e-5;
    for (int64_t i = 0; i < V; ++i) {
      std::vector<double> xp(x.begin(), x.begin() + V), xm = xp;
      xp[i] += h;
      xm[i] -= h;
      double sp, sm;
      cpu::phi4(lat, 1, xp.data(), &sp, nullptr, p, 1);
      cpu::phi4(lat, 1, xm.data(), &sm, nullptr, p, 1);
      ok &= close((sp - sm) / (2 * h), grad[i], 1e-6);
    }
    expect(ok, ("phi4 gradient vs finite differences, rank " + std::to_string(ext.size())).c_str());

    const XYSite<double> q{1.1};
    cpu::xy(lat, batch, x.data(), action.data(), grad.data(), q, 2);
    ok = true;
    for (int64_t b = 0; b < batch; ++b) ok &= close(action[b], naive_xy(ext, x.data() + b * V, V, 1.1), 1e-12);
    for (int64_t i = 0; i < V; ++i) {
      std::vector<double> xp(x.begin(), x.begin() + V), xm = xp;
      xp[i] += h;
      xm[i] -= h;
      ok &= close((naive_xy(ext, xp.data(), V, 1.1) - naive_xy(ext, xm.data(), V, 1.1)) / (2 * h), grad[i], 1e-6);
    }
    expect(ok, ("xy action and gradient, rank " + std::to_string(ext.size())).c_str());
  }

  // The XY site's angle-difference form (what the CUDA kernels call) against its (cos, sin) form
  // (what the CPU loops call), at angles far from the principal range too.
  {
    std::uniform_real_distribution<double> angle(-20.0, 20.0);
    const XYSite<double> q{0.9};
    bool ok = true;
    for (int trial = 0; trial < 200; ++trial) {
      double th = angle(gen), f[3], b[3], fc[3], fs[3], bc[3], bs[3];
      for (int mu = 0; mu < 3; ++mu) {
        f[mu] = angle(gen);
        b[mu] = angle(gen);
        fc[mu] = std::cos(f[mu]), fs[mu] = std::sin(f[mu]), bc[mu] = std::cos(b[mu]), bs[mu] = std::sin(b[mu]);
      }
      const double c = std::cos(th), sn = std::sin(th);
      double g;
      const double a = q.action_grad_from_angles<3>(th, f, b, g);
      ok &= close(a, q.action<3>(c, sn, fc, fs), 1e-13) && close(a, q.action_from_angles<3>(th, f), 0);
      ok &= close(g, q.grad<3>(c, sn, fc, fs, bc, bs), 1e-13) && close(g, q.grad_from_angles<3>(th, f, b), 0);
    }
    expect(ok, "xy site: angle-difference form equals the (cos, sin) form");
  }

  // The same in float at angles up to 1e4 in size, against the (cos, sin) form in double of the
  // same float angles: a link's float difference of two such angles is off by up to 5e-4 rad,
  // so beyond |angle| = 8 the site forms it in double.
  {
    std::uniform_real_distribution<double> angle(-1e4, 1e4), near(-8.0, 8.0);
    const XYSite<float> q{0.9f};
    const XYSite<double> qd{0.9};
    bool ok = true;
    for (int trial = 0; trial < 400; ++trial) {
      auto draw = [&] { return float(trial % 2 ? angle(gen) : near(gen)); };
      float th = draw(), f[3], b[3];
      double fc[3], fs[3], bc[3], bs[3];
      for (int mu = 0; mu < 3; ++mu) {
        f[mu] = draw();
        b[mu] = draw();
        fc[mu] = std::cos(double(f[mu])), fs[mu] = std::sin(double(f[mu]));
        bc[mu] = std::cos(double(b[mu])), bs[mu] = std::sin(double(b[mu]));
      }
      const double c = std::cos(double(th)), sn = std::sin(double(th));
      float g;
      const float a = q.action_grad_from_angles<3>(th, f, b, g);
      ok &= close(a, qd.action<3>(c, sn, fc, fs), 2e-6) && a == q.action_from_angles<3>(th, f);
      ok &= close(g, qd.grad<3>(c, sn, fc, fs, bc, bs), 2e-6) && g == q.grad_from_angles<3>(th, f, b);
    }
    expect(ok, "xy site in float: angle-difference form accurate for angles up to 1e4");
  }

  // Oscillator: real-space action against a naive sum, and the Matsubara form
  // on coefficients from an explicit real DFT.
  {
    const int64_t N = 9;
    const double beta = 3.0, a = beta / N;
    const OscillatorSite<double> p{a, 0.5, 1.0, -2.0, 1.0};  // (x^2 - 1)^2
    std::vector<double> x(N), c(N, 0.0), gc(N), gx(N);
    for (auto& v : x) v = normal(gen);
    double s = 0, naive = 0;
    cpu::oscillator(N, 1, x.data(), &s, nullptr, p, 1);
    for (int64_t n = 0; n < N; ++n) {
      const double d = x[(n + 1) % N] - x[n];
      naive += 0.5 * d * d / (2 * a) + a * std::pow(x[n] * x[n] - 1.0, 2);
    }
    expect(close(s, naive, 1e-12), "oscillator action");
    const double pi = 3.14159265358979323846;
    for (int64_t n = 0; n < N; ++n) {
      c[0] += x[n] / std::sqrt(double(N));
      for (int64_t k = 1; 2 * k < N; ++k) {
        c[2 * k - 1] += std::sqrt(2.0 / N) * std::cos(2 * pi * k * n / N) * x[n];
        c[2 * k] += std::sqrt(2.0 / N) * std::sin(2 * pi * k * n / N) * x[n];
      }
    }
    double sf = 0;
    cpu::oscillator_fourier(N, 1, c.data(), x.data(), &sf, gc.data(), gx.data(), p, 1);
    expect(close(sf, s, 1e-12), "oscillator Matsubara action equals real-space action");
  }

  // Results do not depend on the thread count.
  {
    const int64_t ext[2] = {128, 96};
    const Lattice lat = make_lattice(2, ext);
    std::vector<double> x(8 * lat.volume), a1(8), a2(8);
    for (auto& v : x) v = normal(gen);
    cpu::phi4(lat, 8, x.data(), a1.data(), nullptr, Phi4Site<double>{0.2, 0.3}, 1);
    cpu::phi4(lat, 8, x.data(), a2.data(), nullptr, Phi4Site<double>{0.2, 0.3}, 2);
    expect(a1 == a2, "phi4 action bitwise independent of thread count");
    std::vector<double> g1(x.size()), g2(x.size());  // the fused call sums the action in parts
    cpu::phi4(lat, 8, x.data(), a1.data(), g1.data(), Phi4Site<double>{0.2, 0.3}, 1);
    cpu::phi4(lat, 8, x.data(), a2.data(), g2.data(), Phi4Site<double>{0.2, 0.3}, 2);
    expect(a1 == a2 && g1 == g2, "phi4 action + gradient bitwise independent of thread count");
  }

  // HMC: energy conserved to O(eps^2), a reversible integrator, chains independent
  // of the thread count (the contract a lattice code embedding the sampler relies on).
  {
    const int64_t ext[2] = {16, 16};
    const Lattice lat = make_lattice(2, ext);
    const int64_t B = 4, V = lat.volume;
    const Phi4Site<double> site{0.2, 0.1};
    std::vector<double> x0(B * V), work(3 * B * V), e(4 * B);
    std::vector<uint32_t> acc(B);
    for (auto& v : x0) v = 0.5 * normal(gen);
    double rms[2];
    for (int k = 0; k < 2; ++k) {
      const double eps = k == 0 ? 0.02 : 0.01;
      std::vector<double> x = x0;
      cpu::hmc(lat, B, x.data(), work.data(), e.data(), acc.data(), site,
               HmcSettings<double>{eps, int(0.4 / eps + 0.5), 7u, 0u, 0, true, false}, 1);
      double s2 = 0;
      for (int64_t b = 0; b < B; ++b) {
        const double dH = e[2 * B + b] + e[3 * B + b] - e[b] - e[B + b];
        s2 += dH * dH;
      }
      rms[k] = std::sqrt(s2 / B);
    }
    expect(rms[0] / rms[1] > 3.5 && rms[0] / rms[1] < 4.5, "HMC energy violation scales as eps^2");
    std::vector<double> x = x0;
    cpu::hmc(lat, B, x.data(), work.data(), e.data(), acc.data(), site,
             HmcSettings<double>{0.05, 10, 7u, 0u, 3, true, false}, 1);
    std::vector<double> y(work.begin() + B * V, work.begin() + 2 * B * V);
    for (int64_t i = 0; i < B * V; ++i) work[i] = -work[i];
    cpu::hmc(lat, B, y.data(), work.data(), e.data(), acc.data(), site,
             HmcSettings<double>{0.05, 10, 7u, 0u, 3, false, false}, 1);
    double dmax = 0;
    for (int64_t i = 0; i < B * V; ++i) dmax = std::max(dmax, std::fabs(work[B * V + i] - x0[i]));
    expect(dmax < 1e-10, "HMC trajectory reversed by flipping the momenta");
    std::vector<double> x1 = x0, x2 = x0;
    for (uint64_t t = 0; t < 3; ++t) {
      cpu::hmc(lat, B, x1.data(), work.data(), e.data(), acc.data(), site,
               HmcSettings<double>{0.1, 5, 1u, 0u, t, true, true}, 1);
      cpu::hmc(lat, B, x2.data(), work.data(), e.data(), acc.data(), site,
               HmcSettings<double>{0.1, 5, 1u, 0u, t, true, true}, 3);
    }
    expect(x1 == x2, "HMC chains bitwise independent of thread count");
  }

  // Arguments a lattice code may get wrong: refused with std::invalid_argument naming them
  // (checks.hpp), never a crash or a silent no-op.
  {
    auto refused = [](auto call, const char* needle) {
      try {
        call();
      } catch (const std::invalid_argument& err) {
        return std::string(err.what()).find(needle) != std::string::npos;
      }
      return false;
    };
    const int64_t e[2] = {4, 6};
    const Lattice lat = make_lattice(2, e);
    const int64_t V = lat.volume;
    std::vector<double> x(2 * V, 0.1), g(2 * V), work(3 * 2 * V), en(8);
    std::vector<uint32_t> acc(2);
    double a[2];
    const Phi4Site<double> site{0.2, 0.5};
    const HmcSettings<double> hs{0.1, 2, 1u, 0u, 0, true, true};
    expect(refused([&] { cpu::phi4<double>(lat, 2, nullptr, a, g.data(), site, 1); }, "x must not be null"),
           "null field refused");
    expect(refused([&] { cpu::phi4(lat, -1, x.data(), a, g.data(), site, 1); }, "batch must be >= 0"),
           "negative batch refused");
    expect(refused([&] { cpu::phi4(lat, int64_t(1) << 60, x.data(), a, g.data(), site, 1); }, "too large"),
           "batch * volume overflowing refused");
    Lattice wrong = lat;
    wrong.volume = 100;
    expect(refused([&] { cpu::phi4(wrong, 2, x.data(), a, g.data(), site, 1); }, "lat.volume"),
           "a hand-filled Lattice with the wrong volume refused");
    expect(refused([&] { cpu::phi4(Lattice{}, 2, x.data(), a, g.data(), site, 1); }, "lat.ndim"),
           "an empty Lattice refused");
    expect(refused([&] { cpu::hmc(lat, 2, x.data(), static_cast<double*>(nullptr), en.data(), acc.data(), site, hs,
                                  1); }, "work must not be null"),
           "HMC without a work buffer refused");
    expect(refused([&] { cpu::hmc(lat, 2, x.data(), work.data(), en.data(), acc.data(), site,
                                  HmcSettings<double>{0.1, 2, 1u, 0xffffffffu, 0, true, true}, 1); },
                   "chain_offset + batch"),
           "chain streams past 2^32 refused");
    expect(refused([&] { cpu::philox_normal(static_cast<double*>(nullptr), 2, 8, 1u, 0u, 0, 0, 1); },
                   "out must not be null"),
           "Philox fill into null refused");
    expect(refused([&] { cpu::oscillator_fourier(-1, 2, x.data(), x.data(), a, g.data(), g.data(),
                                                 OscillatorSite<double>{0.1, 0.5, 0, 1, 0}, 1); },
                   "n_slices must be >= 1"),
           "negative n_slices refused");
    expect(refused([&] { cpu::metropolis(lat, 2, x.data(), en.data(), site, 0.5, -1, 1u, 0u, 0, 1); },
                   "n_sweeps must be >= 0"),
           "negative n_sweeps refused");
    // parameters, thread counts and overlapping buffers (unchecked before: NaN actions, a field
    // written with NaN, libgomp ending the process at nthreads = 50000, a wrong action)
    const double nan = std::nan("");
    expect(refused([&] { cpu::phi4(lat, 2, x.data(), a, g.data(), Phi4Site<double>{nan, 0.5}, 1); },
                   "kappa must be finite"),
           "NaN kappa refused");
    expect(refused([&] { cpu::xy(lat, 2, x.data(), a, g.data(), XYSite<double>{INFINITY}, 1); },
                   "beta must be finite"),
           "infinite beta refused");
    expect(refused([&] { cpu::oscillator(int64_t(6), 2, x.data(), a, g.data(), OscillatorSite<double>{0, 0.5, 0, 1, 0},
                                         1); }, "a (= beta / n_slices) must be > 0"),
           "oscillator spacing 0 refused");
    expect(refused([&] { cpu::oscillator(int64_t(6), 2, x.data(), a, g.data(),
                                         OscillatorSite<double>{0.1, 0.5, 0, -1, 0}, 1); }, "c2 must be >= 0"),
           "unbounded oscillator potential refused");
    expect(refused([&] { cpu::phi4(lat, 2, x.data(), a, g.data(), site, 100000); }, "nthreads must be <= "),
           "nthreads beyond 4 x the processors refused");
    expect(refused([&] { cpu::langevin(lat, 2, x.data(), work.data(), site, -0.01, 1, 1u, 0u, 0, 1); },
                   "eps must be > 0"),
           "negative Langevin eps refused");
    expect(refused([&] { cpu::metropolis(lat, 2, x.data(), en.data(), site, nan, 1, 1u, 0u, 0, 1); },
                   "delta must be finite"),
           "NaN Metropolis delta refused");
    expect(refused([&] { cpu::sde_step(2, V, x.data(), g.data(), SdeCoefficients{0, nan, 1}, 1u, 0u, 0, 1); },
                   "coef.score must be finite"),
           "NaN SDE coefficient refused");
    {
      const int64_t N = 4;
      std::vector<double> c(2 * N, 0.1), fw(5 * 2 * N), basis(N * N, 0.5), im(N, 1.0);
      im[2] = 0;
      expect(refused([&] { cpu::hmc_fourier(N, 2, c.data(), fw.data(), en.data(), acc.data(),
                                            OscillatorSite<double>{0.1, 0.5, 0, 1, 0}, basis.data(), im.data(), hs,
                                            1); }, "inv_mass[j] must be > 0"),
             "a zero inverse mass refused");
    }
    expect(refused([&] { cpu::phi4(lat, 2, x.data(), a, x.data(), site, 1); }, "x and grad must not overlap"),
           "gradient written over the field refused");
    expect(refused([&] { cpu::phi4(lat, 2, x.data(), g.data() + 1, g.data(), site, 1); },
                   "action and grad must not overlap"),
           "action inside the gradient refused");
    expect(refused([&] { cpu::hmc(lat, 2, x.data(), work.data(), work.data() + 4, acc.data(), site, hs, 1); },
                   "work and energies must not overlap"),
           "energies inside the work buffer refused");
    expect(refused([&] { make_lattice(2, nullptr); }, "extents must not be null"), "null extents refused");
    expect(refused([&] { cpu::hmc(lat, 2, x.data(), work.data(), en.data(), acc.data(), Phi4Site<double>{0.2, -0.1},
                                  hs, 1); }, "lam must be >= 0 to sample"),
           "an unbounded phi^4 refused by the sampler");
#ifdef _OPENMP
    {
      // OpenMP's default above the cap (OMP_NUM_THREADS for a whole node, in a container with
      // fewer cores): nthreads = 0 is capped, not refused, also where a sampler hands the count on
      const int before = omp_get_max_threads();
      omp_set_num_threads(40 * cpu::num_procs());
      bool ran = true;
      try {
        cpu::hmc(lat, 1, x.data(), work.data(), en.data(), acc.data(), site, hs, 0);
        cpu::langevin(lat, 1, x.data(), work.data(), site, 0.01, 1, 1u, 0u, 0, 0);
      } catch (const std::exception&) {
        ran = false;
      }
      omp_set_num_threads(before);
      expect(ran, "nthreads = 0 with OpenMP's default above the cap runs");
    }
#endif
    // batch 0: nothing to do, and null buffers are fine
    cpu::phi4<double>(lat, 0, nullptr, nullptr, nullptr, site, 1);
    cpu::hmc<double>(lat, 0, nullptr, nullptr, nullptr, nullptr, site, hs, 1);
    cpu::philox_normal(static_cast<double*>(nullptr), 0, 8, 1u, 0u, 0, 0, 1);
    expect(true, "batch 0 is a no-op");
  }

  std::printf("%d passed, %d failed\n", n_checks - failures, failures);
  return failures ? 1 : 0;
}
