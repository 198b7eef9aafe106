// Self-check of the fused kernels of one build, without Python: the vector kernels (float32, this
// build's lanes) against the plain-loop float64 kernels compiled into the same binary, for every
// compiled (q, m) and activation. Used to check builds this machine cannot load into Python, e.g.
// the NEON build under qemu-aarch64 (scripts/check_isa_builds.sh). Exit status 1 on a mismatch.
//
// Bound: the same first-order rounding bound as tests/helpers.py, 2 (L + 1)(K + 3) u with
// u = 2^-24, K = max(q, m, n), relative to the largest entry of each compared array.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

extern "C" {
const char* odecheck_native_isa();
int odecheck_native_lanes();
int mlp_forward_f32(int, int, int, int, int, int, float*, float*, float*, const float*, const float*, double, double,
                    int, int);
int mlp_backward_f32(int, int, int, int, int, int, const float*, const float*, const float*, const float*,
                     const float*, double, double, int, float*, float*, float*);
int mlp_forward_generic_f64(int, int, int, int, int, int, double*, double*, double*, const double*, const double*,
                            double, double, int, int);
int mlp_backward_generic_f64(int, int, int, int, int, int, const double*, const double*, const double*,
                             const double*, const double*, double, double, int, double*, double*, double*);
}

static double rel(const std::vector<float>& got, const std::vector<double>& want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        num = std::fmax(num, std::fabs((double)got[i] - want[i]));
        den = std::fmax(den, std::fabs(want[i]));
    }
    return den > 0 ? num / den : num;
}

int main() {
    const int shapes[][2] = {{16, 16}, {16, 32}, {16, 64}, {32, 16}, {32, 32}, {32, 64}};
    const char* names[] = {"identity", "tanh", "gelu", "softplus", "relu"};
    const int S = 6, R = 3, n = 11;  // n not a multiple of the row blocks; R odd
    int failures = 0;
    std::mt19937 rng(0);
    std::normal_distribution<double> N01;
    std::printf("build %s, %d float32 lanes\n", odecheck_native_isa(), odecheck_native_lanes());
    for (auto& sh : shapes) {
        const int q = sh[0], m = sh[1];
        const size_t nh = (size_t)(S + 1) * R * n * q, na = (size_t)S * R * n * m, nw = (size_t)S * R * q * m;
        for (int act = 0; act < 5; ++act) {
            std::vector<double> W(nw), V(nw), h(nh), a(na), d(na), g((size_t)R * n * q), gV(nw), gW(nw);
            for (auto& v : W) v = N01(rng);
            for (auto& v : V) v = N01(rng);
            for (size_t i = 0; i < (size_t)R * n * q; ++i) h[i] = 2.0 * N01(rng);
            for (auto& v : g) v = N01(rng);
            const double s = 1.0 / std::sqrt((double)q), c = 1.0 / (S * std::sqrt((double)m));
            std::vector<float> Wf(W.begin(), W.end()), Vf(V.begin(), V.end()), hf(h.begin(), h.end()),
                af(na), df(na), gf(g.begin(), g.end()), gVf(nw), gWf(nw);
            mlp_forward_generic_f64(1, S, R, n, q, m, h.data(), a.data(), d.data(), W.data(), V.data(), s, c, act, 1);
            mlp_backward_generic_f64(1, S, R, n, q, m, h.data(), a.data(), d.data(), W.data(), V.data(), s, c,
                                     act == 0, g.data(), gV.data(), gW.data());
            int rc = mlp_forward_f32(1, S, R, n, q, m, hf.data(), af.data(), df.data(), Wf.data(), Vf.data(), s, c,
                                     act, 1);
            rc |= mlp_backward_f32(1, S, R, n, q, m, hf.data(), af.data(), df.data(), Wf.data(), Vf.data(), s, c,
                                   act == 0, gf.data(), gVf.data(), gWf.data());
            const int K = std::max(std::max(q, m), n);
            const double tol = 2.0 * 2 * (S + 1) * (K + 3) * std::ldexp(1.0, -24);  // two implementations
            const double err = std::fmax(std::fmax(rel(hf, h), rel(gf, g)), std::fmax(rel(gVf, gV), rel(gWf, gW)));
            const bool ok = rc == 0 && err < tol;
            failures += !ok;
            std::printf("q=%2d m=%2d %-8s max rel err %.2e (bound %.2e) %s\n", q, m, names[act], err, tol,
                        ok ? "ok" : "FAIL");
        }
    }
    std::printf("%d failed\n", failures);
    return failures ? 1 : 0;
}
