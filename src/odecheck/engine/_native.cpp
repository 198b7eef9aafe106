// Fused CPU kernels for the mlp block, h_{k+1} = h_k + c V_k sigma(s W_k h_k), over stacked weights.
//
// Built on first use by odecheck/_native.py (plain C ABI, loaded with ctypes; no torch headers).
// Every sample moves through the network independently of the others, so each OpenMP thread walks
// its ensemble members through all layers: no per-layer dispatch, no synchronisation between
// layers, and each layer's weights (2 q m numbers) stay in L1 while the n rows pass through,
// RB rows at a time with their accumulators in vector registers.
//
// The vector width follows the instruction set the library is compiled for (GCC/Clang vector
// extensions): VL = 16 float32 lanes on AVX-512, 8 on AVX/AVX2, 4 on SSE2 and NEON, 1 in the
// scalar build (ODECHECK_SCALAR, or no known SIMD). The register blocking follows the number
// of vector registers (32 on AVX-512 and NEON, 16 on AVX2 and SSE): every inner loop works on a
// tile of RB rows by T vectors whose accumulators, weights and broadcast fit in the register file,
// so no target spills in its inner loops. q and m are multiples of 16, hence of every VL.
//
// Layouts (row-major, contiguous):  h (S+1, R, n, q)   a, d (S, R, n, m)
//                                    W (S, R, m, q)     V (S, R, q, m)
// d holds sigma'(u): the forward computes the activation and its derivative together, so the
// backward needs neither u nor a second activation pass.
//
// Adjoint (g = dl/dh_{k+1} row):  ga = c V^T g;  gu = ga * d;  dV += c g a^T;  dW += s gu h^T;
//                                  dl/dh_k = g + s W^T gu.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(ODECHECK_SCALAR)
#define ODECHECK_VL 1
#define ODECHECK_NREG 16
#define ODECHECK_ISA "scalar"
#elif defined(__AVX512F__)
#define ODECHECK_VL 16
#define ODECHECK_NREG 32
#define ODECHECK_ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define ODECHECK_VL 8
#define ODECHECK_NREG 16
#define ODECHECK_ISA "avx2"
#elif defined(__AVX__)
#define ODECHECK_VL 8
#define ODECHECK_NREG 16
#define ODECHECK_ISA "avx"
#elif defined(__ARM_NEON) || defined(__aarch64__)
#define ODECHECK_VL 4
#define ODECHECK_NREG 32
#define ODECHECK_ISA "neon"
#elif defined(__SSE2__)
#define ODECHECK_VL 4
#define ODECHECK_NREG 16
#define ODECHECK_ISA "sse2"
#else
#define ODECHECK_VL 1
#define ODECHECK_NREG 16
#define ODECHECK_ISA "scalar"
#endif

namespace {

constexpr int VL = ODECHECK_VL;      // float32 lanes per vector
constexpr int NREG = ODECHECK_NREG;  // vector registers of the target
// rows per block: 4 with 32 registers, 2 with 16 (measured on one Zen 4/5 core, L = 1024, R = 16, AVX2
// build: 118 ms per step at 2 rows, 129 ms at 4; m = 64: 218 ms against 266 ms)
#ifndef ODECHECK_RB
#define ODECHECK_RB (NREG >= 32 ? 4 : 2)
#endif
constexpr int RB = ODECHECK_RB;

typedef float vf __attribute__((vector_size(4 * VL)));
typedef int32_t vi __attribute__((vector_size(4 * VL)));
typedef float vfu __attribute__((vector_size(4 * VL), aligned(4)));  // unaligned loads and stores

// The widest tile T (a divisor of `total` vectors) whose live registers fit: `per_vec` registers
// per tile vector (accumulators of the RB rows plus loaded operands) and `fixed` more (broadcast).
constexpr int tile(int total, int per_vec, int fixed) {
    int best = 1;
    for (int t = 1; t <= total; ++t)
        if (total % t == 0 && t * per_vec + fixed <= NREG) best = t;
    return best;
}

enum Act { IDENTITY = 0, TANH = 1, GELU = 2, SOFTPLUS = 3, RELU = 4 };

inline vf load(const float* p) { return *reinterpret_cast<const vfu*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vfu*>(p) = v; }
inline vf splat(float x) { return vf{} + x; }
inline vf vabs(vf x) { return (vf)((vi)x & 0x7fffffff); }
inline vf vselect(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }

// exp for float32 (Cephes expf: range reduction by ln 2, degree-6 polynomial), ~1 ulp.
inline vf vexp(vf x) {
    x = vselect(x < -87.33654f, splat(-87.33654f), x);
    x = vselect(x > 88.72283f, splat(88.72283f), x);
    vf fx = x * 1.44269504088896341f + 0.5f;
    vf n = __builtin_convertvector(__builtin_convertvector(fx, vi), vf);  // truncation ...
    n = vselect(n > fx, n - 1.0f, n);                                      // ... made a floor
    vf r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    vf p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)bits;
}

// log(1 + y) for y in [0, 1] (softplus below its threshold): log1p via log of a mantissa in
// [sqrt(1/2), sqrt(2)) (Cephes logf polynomial).
inline vf vlog(vf x) {
    vi xi = (vi)x;
    vi e = ((xi >> 23) & 0xff) - 126;
    vf mant = (vf)((xi & 0x007fffff) | 0x3f000000);  // in [0.5, 1)
    vi small = mant < 0.70710678118654752f;
    vf ef = __builtin_convertvector(e, vf) - vselect(small, splat(1.0f), splat(0.0f));
    mant = vselect(small, mant + mant, mant) - 1.0f;
    vf z = mant * mant;
    vf y = splat(7.0376836292e-2f);
    y = y * mant - 1.1514610310e-1f;
    y = y * mant + 1.1676998740e-1f;
    y = y * mant - 1.2420140846e-1f;
    y = y * mant + 1.4249322787e-1f;
    y = y * mant - 1.6668057665e-1f;
    y = y * mant + 2.0000714765e-1f;
    y = y * mant - 2.4999993993e-1f;
    y = y * mant + 3.3333331174e-1f;
    y = y * mant * z;
    y = y + ef * -2.12194440e-4f;
    y = y - 0.5f * z;
    return mant + y + ef * 0.693359375f;
}

// activation a = sigma(u) and derivative d = sigma'(u), VL lanes at a time. gelu uses the same erf
// formula as ATen's vectorised float gelu (Abramowitz-Stegun 7.1.26, |error| <= 1.5e-7).
template <int act>
inline void act_pair(vf u, vf& a, vf& d) {
    if constexpr (act == GELU) {
        const vf x = u * 0.70710678118654752f;
        const vf t = 1.0f / (vabs(x) * 0.3275911f + 1.0f);
        const vf poly = ((((t * 1.061405429f - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t
                         + 0.254829592f) * t;
        const vf e = vexp(-(x * x));
        const vf erf_abs = 1.0f - poly * e;
        const vf erf = vselect(x < 0.0f, -erf_abs, erf_abs);
        const vf cdf = 0.5f * (1.0f + erf);
        a = u * cdf;
        d = cdf + u * (e * 0.39894228040143268f);
    } else if constexpr (act == TANH) {
        const vf ax = vabs(u);
        const vf z = u * u;
        const vf small = ((((z * -5.70498872745e-3f + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
                           + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * u + u;
        const vf big_abs = 1.0f - 2.0f / (vexp(ax + ax) + 1.0f);
        const vf big = vselect(u < 0.0f, -big_abs, big_abs);
        a = vselect(ax < 0.625f, small, big);
        d = 1.0f - a * a;
    } else if constexpr (act == SOFTPLUS) {  // log(1 + e^u), linear above 20 as in torch
        const vf e = vexp(-vabs(u));                 // in (0, 1]
        const vf lg = vlog(1.0f + e) + vselect(u > 0.0f, u, splat(0.0f));
        a = vselect(u > 20.0f, u, lg);
        const vf sig = vselect(u > 0.0f, 1.0f / (1.0f + e), e / (1.0f + e));
        d = vselect(u > 20.0f, splat(1.0f), sig);
    } else if constexpr (act == RELU) {
        const vi pos = u > 0.0f;
        a = vselect(pos, u, splat(0.0f));
        d = vselect(pos, splat(1.0f), splat(0.0f));
    } else {
        a = u;
        d = splat(1.0f);
    }
}

// RB rows of one layer, forward. wt: (Q, M) = s W^T, vt: (M, Q) = c V^T, as vectors (MV resp. QV a row).
// hin may be hout (the state updated in place): every tile reads the columns it writes, after the
// first product has read all of hin.
template <int act, int QV, int MV, int RB>
inline void fwd_rows(const float* hin, float* hout, float* a, float* d, const vf* wt, const vf* vt) {
    constexpr int Q = VL * QV, M = VL * MV;
    constexpr int JT = tile(MV, RB + 1, 1);  // u tile: RB x JT accumulators, JT weights, a broadcast
    for (int j0 = 0; j0 < MV; j0 += JT) {
        vf u[RB][JT];
        for (int r = 0; r < RB; ++r)
            for (int j = 0; j < JT; ++j) u[r][j] = splat(0.0f);
        for (int p = 0; p < Q; ++p) {
            vf w[JT];
            for (int j = 0; j < JT; ++j) w[j] = wt[p * MV + j0 + j];
            for (int r = 0; r < RB; ++r) {
                const float hp = hin[r * Q + p];
                for (int j = 0; j < JT; ++j) u[r][j] += hp * w[j];
            }
        }
        for (int r = 0; r < RB; ++r)
            for (int j = 0; j < JT; ++j) {
                vf av, dv;
                act_pair<act>(u[r][j], av, dv);
                store(a + r * M + VL * (j0 + j), av);
                store(d + r * M + VL * (j0 + j), dv);
            }
    }
    constexpr int PT = tile(QV, RB + 1, 1);  // output tile: RB x PT accumulators, PT weights, a broadcast
    for (int p0 = 0; p0 < QV; p0 += PT) {
        vf t[RB][PT];
        for (int r = 0; r < RB; ++r)
            for (int p = 0; p < PT; ++p) t[r][p] = load(hin + r * Q + VL * (p0 + p));
        for (int j = 0; j < M; ++j) {
            vf v[PT];
            for (int p = 0; p < PT; ++p) v[p] = vt[j * QV + p0 + p];
            for (int r = 0; r < RB; ++r) {
                const float aj = a[r * M + j];
                for (int p = 0; p < PT; ++p) t[r][p] += aj * v[p];
            }
        }
        for (int r = 0; r < RB; ++r)
            for (int p = 0; p < PT; ++p) store(hout + r * Q + VL * (p0 + p), t[r][p]);
    }
}

// RB rows of one layer, backward. g: dl/dh_{k+1} rows in, dl/dh_k rows out; accV (Q, M) and
// accW (M, Q) accumulate g a^T and gu h^T over the rows (scaled by c and s by the caller).
template <int QV, int MV, int RB, bool identity>
inline void bwd_rows(float* g, const float* h, const float* a, const float* d, const float* Wk, const float* Vk,
                     float s, float c, vf* accV, vf* accW) {
    constexpr int Q = VL * QV, M = VL * MV;
    alignas(64) float gu[RB][M];
    // ga = V^T g and accV += g a^T, sharing the broadcast of g: per tile vector RB ga and RB a
    // registers, one V and one accV vector
    constexpr int JT = tile(MV, 2 * RB + 2, 1);
    for (int j0 = 0; j0 < MV; j0 += JT) {
        vf ga[RB][JT], ar[RB][JT];
        for (int r = 0; r < RB; ++r)
            for (int j = 0; j < JT; ++j) {
                ga[r][j] = splat(0.0f);
                ar[r][j] = load(a + r * M + VL * (j0 + j));
            }
        for (int p = 0; p < Q; ++p) {
            vf v[JT], acc[JT];
            for (int j = 0; j < JT; ++j) {
                v[j] = load(Vk + p * M + VL * (j0 + j));
                acc[j] = accV[p * MV + j0 + j];
            }
            for (int r = 0; r < RB; ++r) {
                const float gp = g[r * Q + p];
                for (int j = 0; j < JT; ++j) {
                    ga[r][j] += gp * v[j];
                    acc[j] += gp * ar[r][j];
                }
            }
            for (int j = 0; j < JT; ++j) accV[p * MV + j0 + j] = acc[j];
        }
        for (int r = 0; r < RB; ++r)
            for (int j = 0; j < JT; ++j) {
                vf x = ga[r][j] * c;
                if constexpr (!identity) x *= load(d + r * M + VL * (j0 + j));
                store(&gu[r][VL * (j0 + j)], x);
            }
    }
    // t = W^T gu and accW += gu h^T, sharing the broadcast of gu
    constexpr int PT = tile(QV, 2 * RB + 2, 1);
    for (int p0 = 0; p0 < QV; p0 += PT) {
        vf t[RB][PT], hr[RB][PT];
        for (int r = 0; r < RB; ++r)
            for (int p = 0; p < PT; ++p) {
                t[r][p] = splat(0.0f);
                hr[r][p] = load(h + r * Q + VL * (p0 + p));
            }
        for (int j = 0; j < M; ++j) {
            vf w[PT], acc[PT];
            for (int p = 0; p < PT; ++p) {
                w[p] = load(Wk + j * Q + VL * (p0 + p));
                acc[p] = accW[j * QV + p0 + p];
            }
            for (int r = 0; r < RB; ++r) {
                const float gj = gu[r][j];
                for (int p = 0; p < PT; ++p) {
                    t[r][p] += gj * w[p];
                    acc[p] += gj * hr[r][p];
                }
            }
            for (int p = 0; p < PT; ++p) accW[j * QV + p0 + p] = acc[p];
        }
        for (int r = 0; r < RB; ++r)
            for (int p = 0; p < PT; ++p) {
                float* gp = g + r * Q + VL * (p0 + p);
                store(gp, load(gp) + s * t[r][p]);
            }
    }
}

template <int act, int QV, int MV>
void forward(int threads, int S, int R, int n, float* h, float* a, float* d, const float* W, const float* V,
             float s, float c, int keep) {
    constexpr int Q = VL * QV, M = VL * MV;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int r = 0; r < R; ++r) {
        vf wt[Q * MV], vt[M * QV];
        alignas(64) float ar[RB * M], dr[RB * M];
        // keep == 0: h is (R, n, Q), overwritten by the output; the state lives in a private copy
        std::vector<float> scratch(keep ? 0 : (size_t)n * Q);
        float* state = scratch.data();
        if (!keep) std::memcpy(state, h + (size_t)r * n * Q, sizeof(float) * n * Q);
        for (int k = 0; k < S; ++k) {
            const size_t kr = (size_t)k * R + r;
            const float* Wk = W + kr * M * Q;
            const float* Vk = V + kr * Q * M;
            alignas(64) float tw[Q * M], tv[M * Q];
            for (int j = 0; j < M; ++j)
                for (int p = 0; p < Q; ++p) {
                    tw[p * M + j] = s * Wk[j * Q + p];
                    tv[j * Q + p] = c * Vk[p * M + j];
                }
            std::memcpy(wt, tw, sizeof(tw));
            std::memcpy(vt, tv, sizeof(tv));
            const float* hin = keep ? h + kr * n * Q : state;
            float* hout = keep ? h + ((size_t)(k + 1) * R + r) * n * Q : state;
            int i = 0;
            for (; i + RB <= n; i += RB)
                fwd_rows<act, QV, MV, RB>(hin + (size_t)i * Q, hout + (size_t)i * Q,
                                          keep ? a + (kr * n + i) * M : ar, keep ? d + (kr * n + i) * M : dr, wt, vt);
            for (; i < n; ++i)
                fwd_rows<act, QV, MV, 1>(hin + (size_t)i * Q, hout + (size_t)i * Q,
                                         keep ? a + (kr * n + i) * M : ar, keep ? d + (kr * n + i) * M : dr, wt, vt);
        }
        if (!keep) std::memcpy(h + (size_t)r * n * Q, state, sizeof(float) * n * Q);
    }
}

template <int QV, int MV, bool identity>
void backward(int threads, int S, int R, int n, const float* h, const float* a, const float* d, const float* W,
              const float* V, float s, float c, float* g, float* gV, float* gW) {
    constexpr int Q = VL * QV, M = VL * MV;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int r = 0; r < R; ++r) {
        vf accV[Q * MV], accW[M * QV];
        float* gr = g + (size_t)r * n * Q;
        for (int k = S - 1; k >= 0; --k) {
            const size_t kr = (size_t)k * R + r;
            const float* Wk = W + kr * M * Q;
            const float* Vk = V + kr * Q * M;
            for (int e = 0; e < Q * MV; ++e) accV[e] = splat(0.0f);
            for (int e = 0; e < M * QV; ++e) accW[e] = splat(0.0f);
            int i = 0;
            for (; i + RB <= n; i += RB)
                bwd_rows<QV, MV, RB, identity>(gr + (size_t)i * Q, h + (kr * n + i) * Q, a + (kr * n + i) * M,
                                               d + (kr * n + i) * M, Wk, Vk, s, c, accV, accW);
            for (; i < n; ++i)
                bwd_rows<QV, MV, 1, identity>(gr + (size_t)i * Q, h + (kr * n + i) * Q, a + (kr * n + i) * M,
                                              d + (kr * n + i) * M, Wk, Vk, s, c, accV, accW);
            float* gVk = gV + kr * Q * M;
            float* gWk = gW + kr * M * Q;
            for (int e = 0; e < Q * MV; ++e) store(gVk + VL * e, c * accV[e]);
            for (int e = 0; e < M * QV; ++e) store(gWk + VL * e, s * accW[e]);
        }
    }
}

template <int QV, int MV>
int forward_act(int act, int threads, int S, int R, int n, float* h, float* a, float* d, const float* W,
                const float* V, float s, float c, int keep) {
    switch (act) {
    case IDENTITY: forward<IDENTITY, QV, MV>(threads, S, R, n, h, a, d, W, V, s, c, keep); return 0;
    case TANH: forward<TANH, QV, MV>(threads, S, R, n, h, a, d, W, V, s, c, keep); return 0;
    case GELU: forward<GELU, QV, MV>(threads, S, R, n, h, a, d, W, V, s, c, keep); return 0;
    case SOFTPLUS: forward<SOFTPLUS, QV, MV>(threads, S, R, n, h, a, d, W, V, s, c, keep); return 0;
    case RELU: forward<RELU, QV, MV>(threads, S, R, n, h, a, d, W, V, s, c, keep); return 0;
    default: return 1;
    }
}

template <int QV, int MV>
int backward_id(int identity, int threads, int S, int R, int n, const float* h, const float* a, const float* d,
                const float* W, const float* V, float s, float c, float* g, float* gV, float* gW) {
    if (identity)
        backward<QV, MV, true>(threads, S, R, n, h, a, d, W, V, s, c, g, gV, gW);
    else
        backward<QV, MV, false>(threads, S, R, n, h, a, d, W, V, s, c, g, gV, gW);
    return 0;
}


// ----------------------------------------------------------------------------- any (q, m), float32 or float64
// Small layers (falsification probes, properties, the small-dimension claims) spend almost all of
// their time in per-operation overhead on the batched path; plain loops over one member's rows
// beat it there. The C library's functions make these exact to rounding, like ATen's.
template <typename T, int act>
inline void act_scalar(T u, T& a, T& d) {
    if constexpr (act == GELU) {
        const T cdf = T(0.5) * (T(1) + std::erf(u * T(0.70710678118654752440)));
        a = u * cdf;
        d = cdf + u * T(0.39894228040143267794) * std::exp(T(-0.5) * u * u);
    } else if constexpr (act == TANH) {
        a = std::tanh(u);
        d = T(1) - a * a;
    } else if constexpr (act == SOFTPLUS) {
        a = u > T(20) ? u : std::log1p(std::exp(u));
        d = u > T(20) ? T(1) : T(1) / (T(1) + std::exp(-u));
    } else if constexpr (act == RELU) {
        a = u > T(0) ? u : T(0);
        d = u > T(0) ? T(1) : T(0);
    } else {
        a = u;
        d = T(1);
    }
}

template <typename T, int act>
void forward_generic(int threads, int S, int R, int n, int q, int m, T* h, T* a, T* d, const T* W, const T* V,
                     T s, T c, int keep) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int r = 0; r < R; ++r) {
        std::vector<T> u(m), ar(m), dr(m), t(q), state(keep ? 0 : (size_t)n * q);
        if (!keep) std::memcpy(state.data(), h + (size_t)r * n * q, sizeof(T) * n * q);
        for (int k = 0; k < S; ++k) {
            const size_t kr = (size_t)k * R + r;
            const T* Wk = W + kr * m * q;  // (m, q)
            const T* Vk = V + kr * q * m;  // (q, m)
            const T* hin = keep ? h + kr * n * q : state.data();
            T* hout = keep ? h + ((size_t)(k + 1) * R + r) * n * q : state.data();
            for (int i = 0; i < n; ++i) {
                const T* hi = hin + (size_t)i * q;
                T* ai = keep ? a + (kr * n + i) * m : ar.data();
                T* di = keep ? d + (kr * n + i) * m : dr.data();
                for (int j = 0; j < m; ++j) {
                    T acc = 0;
                    for (int p = 0; p < q; ++p) acc += Wk[j * q + p] * hi[p];
                    act_scalar<T, act>(s * acc, ai[j], di[j]);
                }
                for (int p = 0; p < q; ++p) {
                    T acc = 0;
                    for (int j = 0; j < m; ++j) acc += Vk[p * m + j] * ai[j];
                    t[p] = hi[p] + c * acc;
                }
                std::memcpy(hout + (size_t)i * q, t.data(), sizeof(T) * q);
            }
        }
        if (!keep) std::memcpy(h + (size_t)r * n * q, state.data(), sizeof(T) * n * q);
    }
}

template <typename T>
void backward_generic(int threads, int S, int R, int n, int q, int m, const T* h, const T* a, const T* d,
                      const T* W, const T* V, T s, T c, int identity, T* g, T* gV, T* gW) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int r = 0; r < R; ++r) {
        std::vector<T> gu(m), t(q);
        T* gr = g + (size_t)r * n * q;
        for (int k = S - 1; k >= 0; --k) {
            const size_t kr = (size_t)k * R + r;
            const T* Wk = W + kr * m * q;
            const T* Vk = V + kr * q * m;
            T* gVk = gV + kr * q * m;
            T* gWk = gW + kr * m * q;
            std::fill(gVk, gVk + q * m, T(0));
            std::fill(gWk, gWk + m * q, T(0));
            for (int i = 0; i < n; ++i) {
                T* gi = gr + (size_t)i * q;
                const T* ai = a + (kr * n + i) * m;
                const T* di = d + (kr * n + i) * m;
                const T* hi = h + (kr * n + i) * q;
                for (int j = 0; j < m; ++j) {
                    T acc = 0;
                    for (int p = 0; p < q; ++p) acc += gi[p] * Vk[p * m + j];
                    gu[j] = identity ? c * acc : c * acc * di[j];
                }
                for (int p = 0; p < q; ++p)
                    for (int j = 0; j < m; ++j) gVk[p * m + j] += gi[p] * ai[j];
                for (int j = 0; j < m; ++j)
                    for (int p = 0; p < q; ++p) gWk[j * q + p] += gu[j] * hi[p];
                for (int p = 0; p < q; ++p) {
                    T acc = 0;
                    for (int j = 0; j < m; ++j) acc += gu[j] * Wk[j * q + p];
                    t[p] = acc;
                }
                for (int p = 0; p < q; ++p) gi[p] += s * t[p];
            }
            for (int e = 0; e < q * m; ++e) {
                gVk[e] *= c;
                gWk[e] *= s;
            }
        }
    }
}

template <typename T>
int forward_generic_act(int act, int threads, int S, int R, int n, int q, int m, T* h, T* a, T* d, const T* W,
                        const T* V, T s, T c, int keep) {
    switch (act) {
    case IDENTITY: forward_generic<T, IDENTITY>(threads, S, R, n, q, m, h, a, d, W, V, s, c, keep); return 0;
    case TANH: forward_generic<T, TANH>(threads, S, R, n, q, m, h, a, d, W, V, s, c, keep); return 0;
    case GELU: forward_generic<T, GELU>(threads, S, R, n, q, m, h, a, d, W, V, s, c, keep); return 0;
    case SOFTPLUS: forward_generic<T, SOFTPLUS>(threads, S, R, n, q, m, h, a, d, W, V, s, c, keep); return 0;
    case RELU: forward_generic<T, RELU>(threads, S, R, n, q, m, h, a, d, W, V, s, c, keep); return 0;
    default: return 1;
    }
}

}  // namespace

// (q, m) pairs with a compiled kernel: q, m in {16, 32}, m also 64. The Python side checks
// odecheck_native_supports first; the entry points return 1 for anything else.
// X(q / 16, m / 16); the kernels take q / VL and m / VL vectors a row.
#define ODECHECK_SHAPES(X) X(1, 1) X(1, 2) X(1, 4) X(2, 1) X(2, 2) X(2, 4)
#define ODECHECK_V(x16) (16 / VL * (x16))

extern "C" {

const char* odecheck_native_isa() { return ODECHECK_ISA; }

int odecheck_native_lanes() { return VL; }

int odecheck_native_registers() { return NREG; }

// The machine's measured FMA peak: each thread runs NACC independent vector accumulators through
// `iters` rounds of a = a * b + c (one fused multiply-add each where the target has FMA; 2 VL flops),
// enough independent chains to cover the FMA latency on every target. Returns the flops done; the
// caller times the call. The result of the chains is folded into `sink` so that none is optimized away.
float odecheck_fma_peak(int threads, long iters) {
    constexpr int NACC = NREG >= 32 ? 16 : 8;
    float sink = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
        vf a[NACC];
        const vf b = splat(0.999999f), c = splat(1e-7f);
        for (int j = 0; j < NACC; ++j) a[j] = splat(1.0f + 0.001f * j);
        for (long t = 0; t < iters; ++t)
            for (int j = 0; j < NACC; ++j) a[j] = a[j] * b + c;
        vf total = splat(0.0f);
        for (int j = 0; j < NACC; ++j) total += a[j];
        for (int l = 0; l < VL; ++l) sink += total[l];
    }
    return sink;
}

int odecheck_fma_chains() { return NREG >= 32 ? 16 : 8; }

int odecheck_native_openmp() {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int odecheck_native_supports(int q, int m) {
#define X(Q16, M16) if (q == 16 * Q16 && m == 16 * M16) return 1;
    ODECHECK_SHAPES(X)
#undef X
    return 0;
}

int mlp_forward_f32(int threads, int S, int R, int n, int q, int m, float* h, float* a, float* d,
                    const float* W, const float* V, double s, double c, int act, int keep) {
#define X(Q16, M16) \
    if (q == 16 * Q16 && m == 16 * M16) \
        return forward_act<ODECHECK_V(Q16), ODECHECK_V(M16)>(act, threads, S, R, n, h, a, d, W, V, (float)s, (float)c, keep);
    ODECHECK_SHAPES(X)
#undef X
    return 1;
}

int mlp_backward_f32(int threads, int S, int R, int n, int q, int m, const float* h, const float* a,
                     const float* d, const float* W, const float* V, double s, double c, int identity, float* g,
                     float* gV, float* gW) {
#define X(Q16, M16) \
    if (q == 16 * Q16 && m == 16 * M16) \
        return backward_id<ODECHECK_V(Q16), ODECHECK_V(M16)>(identity, threads, S, R, n, h, a, d, W, V, (float)s, (float)c, g, gV, gW);
    ODECHECK_SHAPES(X)
#undef X
    return 1;
}

int mlp_forward_generic_f32(int threads, int S, int R, int n, int q, int m, float* h, float* a, float* d,
                            const float* W, const float* V, double s, double c, int act, int keep) {
    return forward_generic_act<float>(act, threads, S, R, n, q, m, h, a, d, W, V, (float)s, (float)c, keep);
}

int mlp_forward_generic_f64(int threads, int S, int R, int n, int q, int m, double* h, double* a, double* d,
                            const double* W, const double* V, double s, double c, int act, int keep) {
    return forward_generic_act<double>(act, threads, S, R, n, q, m, h, a, d, W, V, s, c, keep);
}

int mlp_backward_generic_f32(int threads, int S, int R, int n, int q, int m, const float* h, const float* a,
                             const float* d, const float* W, const float* V, double s, double c, int identity,
                             float* g, float* gV, float* gW) {
    backward_generic<float>(threads, S, R, n, q, m, h, a, d, W, V, (float)s, (float)c, identity, g, gV, gW);
    return 0;
}

int mlp_backward_generic_f64(int threads, int S, int R, int n, int q, int m, const double* h, const double* a,
                             const double* d, const double* W, const double* V, double s, double c, int identity,
                             double* g, double* gV, double* gW) {
    backward_generic<double>(threads, S, R, n, q, m, h, a, d, W, V, s, c, identity, g, gV, gW);
    return 0;
}

}  // extern "C"
