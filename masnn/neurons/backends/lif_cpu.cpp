// Fused multi-step LIF for CPU tensors: one pass over T forward, one pass backward.
//
// Plain C ABI (no torch headers): masnn/neurons/backends/cpp.py compiles this file with the
// system C++ compiler on first use, caches the shared library and calls it through ctypes.
// Time-major layout: element (t, n) of a (T, N) buffer is at t * N + n.
//
// The arithmetic mirrors masnn.neurons.functional operation by operation (same order, same
// roundings; the build uses -ffp-contract=off so no multiply-add is fused), so the forward
// pass equals the reference bit for bit. Neurons are independent: OpenMP splits them into
// fixed CHUNK-sized blocks (the result never depends on the thread count); within a block the
// loop over neurons is the innermost one, so it vectorises.
#include <cmath>
#include <cstdint>
#include <vector>

#include "lif_common.h"

namespace {

using namespace masnn_lif;

constexpr int64_t CHUNK = 512;

// BatchNorm's per-channel affine map read into the kernel (the fused BN + LIF entries): the
// input is y (the conv output), the LIF's input current is X = y * scale[c] + shift[c] (the
// operation order of ATen's CPU batch_norm), so the normalised tensor is never written. Neuron n
// of a (T, N) row lies in plane p = n / hw (N = B * C * hw), channel p % C. The plain LIF is the
// geometry of one plane of N neurons and no map.
template <typename S>
struct Affine {
  const S* scale;   // (C)
  const S* shift;   // (C)
  const S* mean;    // (C) backward: the centre of the reduction sum(g * (y - mean))
  int64_t C;
  int64_t hw;
  double* part_g;   // (nchunks) backward out: per-block sum of dL/dX
  double* part_gy;  // (nchunks) backward out: per-block sum of dL/dX * (y - mean)
};

// Blocks never straddle a plane (one channel per block): block c is plane c / per_plane, neurons
// [(c % per_plane) * CHUNK, + CHUNK) of it. The plain LIF (hw = N) gives the flat split.
struct Blocks {
  int64_t hw, per_plane, count;
  Blocks(int64_t N, int64_t hw_) : hw(hw_), per_plane((hw_ + CHUNK - 1) / CHUNK),
                                   count((N / hw_) * ((hw_ + CHUNK - 1) / CHUNK)) {}
  int64_t plane(int64_t c) const { return c / per_plane; }
  int64_t start(int64_t c) const { return plane(c) * hw + (c % per_plane) * CHUNK; }
  int64_t len(int64_t c) const {
    const int64_t off = (c % per_plane) * CHUNK;
    return (hw - off) < CHUNK ? (hw - off) : CHUNK;
  }
};

template <typename S, bool BN>
void forward(const S* x, const S* v0, S* spikes, S* u_save, S* v_last, int64_t T, int64_t N,
             const Params& p, const Affine<S>* bn, int nthreads) {
  const S k = S(p.leak), vr = S(p.v_rest), g = S(p.gain), th = S(p.v_th), dec = S(p.decay),
          vres = S(p.v_reset);
  const Blocks blk(N, BN ? bn->hw : N);
  const int64_t nchunks = blk.count;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t n0 = blk.start(c);
    const int64_t len = blk.len(c);
    const int64_t ch = BN ? blk.plane(c) % bn->C : 0;
    const S sc = BN ? bn->scale[ch] : S(1), sh = BN ? bn->shift[ch] : S(0);
    S v[CHUNK];
    for (int64_t i = 0; i < len; ++i) v[i] = v0 ? v0[n0 + i] : S(0);
    for (int64_t t = 0; t < T; ++t) {
      const S* xt = x + t * N + n0;
      S* st = spikes + t * N + n0;
      S* ut = u_save ? u_save + t * N + n0 : nullptr;
      for (int64_t i = 0; i < len; ++i) {
        const S xi = BN ? xt[i] * sc + sh : xt[i];
        S u = charge(v[i], xi, k, vr, g, p);
        S s = fire(u, th, p);
        st[i] = s;
        if (ut) ut[i] = u;
        v[i] = reset(u, s, th, dec, vres, p);
      }
    }
    for (int64_t i = 0; i < len; ++i) v_last[n0 + i] = v[i];
  }
}

// The backward pass. Every configuration flag is a template parameter, so the inner loop over
// neurons has no branches (only selects) and vectorises; neutral parameters (decay 1, gain 1,
// leak 0, v_reset 0) are plain multiplications/additions by 1/0 here (gradients only need to
// agree to rounding, unlike the forward pass).
// Nothing of size (T, N) is saved by the forward pass but its input: each block of CHUNK
// neurons first recomputes its pre-reset membranes U[t] from X (the forward pass's own
// arithmetic, so bit for bit the forward's U) into a per-thread buffer of T x CHUNK values that
// stays in cache, then runs the reverse pass over it.
// grad_s: (T, N); grad_vlast: (N); x: (T, N) the forward's input; v0: (N) or null (zeros).
// grad_x: (T, N) out; grad_v0: (N) out or null; part_leak / part_gain: (nchunks) per-block
// partial sums (summed by the caller in a fixed order: deterministic).
// Recompute the pre-reset membranes U[t] of one block into ubuf (T x CHUNK) as forward() does
// (BN: from X = y * scale + shift). Not a template of the backward's flags and never inlined:
// it depends on none of them, and one copy per dtype keeps the build short.
template <typename S>
__attribute__((noinline)) void recompute_block(const S* x, const S* v0, S* ubuf, S* v, int64_t T,
                                               int64_t N, int64_t n0, int64_t len, S sc, S sh,
                                               bool affine, const Params& p) {
  const S k = S(p.leak), vr = S(p.v_rest), g = S(p.gain), th = S(p.v_th), dec = S(p.decay),
          vres = S(p.v_reset);
  for (int64_t i = 0; i < len; ++i) v[i] = v0 ? v0[n0 + i] : S(0);
  for (int64_t t = 0; t < T; ++t) {
    const S* xt = x + t * N + n0;
    S* ut = ubuf + t * CHUNK;
    if (affine) {
      for (int64_t i = 0; i < len; ++i) {
        S u = charge(v[i], xt[i] * sc + sh, k, vr, g, p);
        S s = fire(u, th, p);
        ut[i] = u;
        v[i] = reset(u, s, th, dec, vres, p);
      }
    } else {
      for (int64_t i = 0; i < len; ++i) {
        S u = charge(v[i], xt[i], k, vr, g, p);
        S s = fire(u, th, p);
        ut[i] = u;
        v[i] = reset(u, s, th, dec, vres, p);
      }
    }
  }
}

// BatchNorm's two reductions over one block: sum of dL/dX and of dL/dX * (y - mean), read back
// right after the block's reverse pass wrote them (still in cache).
template <typename S>
__attribute__((noinline)) void bn_block_sums(const S* gx, const S* y, int64_t T, int64_t N,
                                             int64_t n0, int64_t len, S mu, double* sum_g,
                                             double* sum_gy) {
  S acc_g[CHUNK];
  S acc_gy[CHUNK];
  for (int64_t i = 0; i < len; ++i) acc_g[i] = acc_gy[i] = S(0);
  for (int64_t t = 0; t < T; ++t) {
    const S* __restrict gxt = gx + t * N + n0;
    const S* __restrict yt = y + t * N + n0;
    for (int64_t i = 0; i < len; ++i) {
      acc_g[i] = acc_g[i] + gxt[i];
      acc_gy[i] = acc_gy[i] + gxt[i] * (yt[i] - mu);
    }
  }
  double sg = 0.0, sgy = 0.0;
  for (int64_t i = 0; i < len; ++i) {
    sg += double(acc_g[i]);
    sgy += double(acc_gy[i]);
  }
  *sum_g = sg;
  *sum_gy = sgy;
}

// BatchNorm (bn not null): the recomputation reads X = y * scale + shift, and after its reverse
// pass each block sums dL/dX and dL/dX * (y - mean) over its T x len values (still in cache), so
// the reductions add no pass over memory; bn is a runtime argument (not a template parameter:
// it would double the instantiations, and the build time, for code outside the inner loop).
template <typename S, int SG, bool HARD, bool DETACH, bool STRICT, bool NEED_K, bool NEED_G>
void backward_t(const S* grad_s, const S* grad_vlast, const S* x, const S* v0, S* grad_x,
                S* grad_v0, double* part_leak, double* part_gain, int64_t T, int64_t N,
                const Params& p, const Affine<S>* bn, int nthreads) {
  const S k = p.has_leak ? S(p.leak) : S(0), vr = S(p.v_rest);
  const S g = p.has_gain ? S(p.gain) : S(1), th = S(p.v_th);
  const S dec = p.has_decay ? S(p.decay) : S(1), vres = p.has_vreset ? S(p.v_reset) : S(0);
  const S a = S(p.sg_param);
  const S one_minus_k = S(1) - k;
  const Blocks blk(N, bn ? bn->hw : N);
  const int64_t nchunks = blk.count;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<S> ubuf(static_cast<size_t>(T) * CHUNK);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t n0 = blk.start(c);
      const int64_t len = blk.len(c);
      const int64_t ch = bn ? blk.plane(c) % bn->C : 0;
      const S sc = bn ? bn->scale[ch] : S(1), sh = bn ? bn->shift[ch] : S(0);
      S gv[CHUNK];
      S acc_k[CHUNK];
      S acc_g[CHUNK];
      S vprev[CHUNK];
      recompute_block(x, v0, ubuf.data(), gv, T, N, n0, len, sc, sh, bn != nullptr, p);
      for (int64_t i = 0; i < len; ++i) {
        gv[i] = grad_vlast[n0 + i];
        acc_k[i] = S(0);
        acc_g[i] = S(0);
      }
      for (int64_t t = T - 1; t >= 0; --t) {
        const S* __restrict ut = ubuf.data() + t * CHUNK;
        const S* __restrict gst = grad_s + t * N + n0;
        S* __restrict gxt = grad_x + t * N + n0;
        if (NEED_K) {  // the post-reset membrane V[t-1] this step leaked from
          if (t > 0) {
            const S* __restrict up = ubuf.data() + (t - 1) * CHUNK;
            for (int64_t i = 0; i < len; ++i) {
              const S uu = up[i];
              const S hh = uu - th;
              const S ss = (STRICT ? (hh > S(0)) : (hh >= S(0))) ? S(1) : S(0);
              vprev[i] = HARD ? (dec * uu) * (S(1) - ss) + ss * vres : dec * (uu - ss * th);
            }
          } else {
            for (int64_t i = 0; i < len; ++i) vprev[i] = v0 ? v0[n0 + i] : S(0);
          }
        }
        for (int64_t i = 0; i < len; ++i) {
          const S ui = ut[i];
          const S h = ui - th;
          const S s = (STRICT ? (h > S(0)) : (h >= S(0))) ? S(1) : S(0);
          const S sg = surrogate_grad_t<S, SG>(h, a);
          const S gvi = gv[i];
          S gs = gst[i];
          S gu;
          if (HARD) {
            if (!DETACH) gs = gs + gvi * (vres - dec * ui);
            gu = sg * gs + gvi * dec * (S(1) - s);
          } else {
            if (!DETACH) gs = gs - gvi * dec * th;
            gu = sg * gs + gvi * dec;
          }
          gxt[i] = g * gu;
          gv[i] = one_minus_k * gu;
          if (NEED_K) acc_k[i] = acc_k[i] + gu * (vr - vprev[i]);
          // the input current X (BN: y * scale + shift; plain: scale 1, shift 0 give X itself)
          if (NEED_G) acc_g[i] = acc_g[i] + gu * (x[t * N + n0 + i] * sc + sh);
        }
      }
      if (grad_v0)
        for (int64_t i = 0; i < len; ++i) grad_v0[n0 + i] = gv[i];
      if (NEED_K) {
        double sum = 0.0;
        for (int64_t i = 0; i < len; ++i) sum += double(acc_k[i]);
        part_leak[c] = sum;
      }
      if (NEED_G) {
        double sum = 0.0;
        for (int64_t i = 0; i < len; ++i) sum += double(acc_g[i]);
        part_gain[c] = sum;
      }
      if (bn)  // BN's reductions over this block's dL/dX (just written) and y
        bn_block_sums(grad_x, x, T, N, n0, len, bn->mean[ch], bn->part_g + c, bn->part_gy + c);
    }
  }
}

#define MASNN_BWD_ARGS gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, bn, nt
#define MASNN_BWD_PARAMS                                                                      \
  const S *gs, const S *gvl, const S *x, const S *v0, S *gx, S *gv0, double *pk, double *pg, \
      int64_t T, int64_t N, const Params &p, const Affine<S> *bn, int nt

template <typename S, int SG, bool HARD, bool DETACH, bool STRICT>
void backward_k(MASNN_BWD_PARAMS) {
  if (pk && pg)
    backward_t<S, SG, HARD, DETACH, STRICT, true, true>(MASNN_BWD_ARGS);
  else if (pk)
    backward_t<S, SG, HARD, DETACH, STRICT, true, false>(MASNN_BWD_ARGS);
  else if (pg)
    backward_t<S, SG, HARD, DETACH, STRICT, false, true>(MASNN_BWD_ARGS);
  else
    backward_t<S, SG, HARD, DETACH, STRICT, false, false>(MASNN_BWD_ARGS);
}

template <typename S, int SG>
void backward_s(MASNN_BWD_PARAMS) {
  const int key = (p.hard ? 4 : 0) | (p.detach ? 2 : 0) | (p.strict ? 1 : 0);
  switch (key) {
    case 0: backward_k<S, SG, false, false, false>(MASNN_BWD_ARGS); break;
    case 1: backward_k<S, SG, false, false, true>(MASNN_BWD_ARGS); break;
    case 2: backward_k<S, SG, false, true, false>(MASNN_BWD_ARGS); break;
    case 3: backward_k<S, SG, false, true, true>(MASNN_BWD_ARGS); break;
    case 4: backward_k<S, SG, true, false, false>(MASNN_BWD_ARGS); break;
    case 5: backward_k<S, SG, true, false, true>(MASNN_BWD_ARGS); break;
    case 6: backward_k<S, SG, true, true, false>(MASNN_BWD_ARGS); break;
    default: backward_k<S, SG, true, true, true>(MASNN_BWD_ARGS); break;
  }
}

template <typename S>
void backward(MASNN_BWD_PARAMS) {
  with_surrogate(p.surrogate, [&](auto sg) {
    backward_s<S, decltype(sg)::value>(MASNN_BWD_ARGS);
  });
}

// BatchNorm's input gradient from dL/dX (in place) once the per-channel reductions are known:
// dL/dy = a[c] * g - d[c] - b[c] * (y - mean[c]) (training; eval: b = d = 0). P planes of hw
// elements, channel p % C.
template <typename S>
void bn_input_grad(S* g, const S* y, const S* a, const S* d, const S* b, const S* mean,
                   int64_t P, int64_t C, int64_t hw, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t pl = 0; pl < P; ++pl) {
    const int64_t ch = pl % C;
    const S ac = a[ch], dc = d[ch], bc = b[ch], mc = mean[ch];
    S* __restrict gp = g + pl * hw;
    const S* __restrict yp = y + pl * hw;
    for (int64_t i = 0; i < hw; ++i) gp[i] = ac * gp[i] - dc - bc * (yp[i] - mc);
  }
}

// The mean of n values and the sum of their squared deviations from it, in double, each sum
// over LANES independent partial sums combined in a fixed order (deterministic; the loops
// vectorise, where one running sum would be a chain of dependent adds).
template <typename S>
inline void mean_m2(const S* __restrict v, int64_t n, double& mean, double& m2) {
  constexpr int64_t LANES = 8;
  double a[LANES] = {};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int64_t l = 0; l < LANES; ++l) a[l] += double(v[i + l]);
  double s = 0.0;
  for (int64_t l = 0; l < LANES; ++l) s += a[l];
  for (; i < n; ++i) s += double(v[i]);
  const double mu = s / double(n);
  double b[LANES] = {};
  i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int64_t l = 0; l < LANES; ++l) {
      const double d = double(v[i + l]) - mu;
      b[l] += d * d;
    }
  double q = 0.0;
  for (int64_t l = 0; l < LANES; ++l) q += b[l];
  for (; i < n; ++i) {
    const double d = double(v[i]) - mu;
    q += d * d;
  }
  mean = mu;
  m2 = q;
}

// Per-plane statistics for BatchNorm's batch mean and variance: P planes of hw elements, each
// plane's mean and sum of squared deviations from it (mean_m2: two passes over a plane that
// stays in cache). The caller combines the planes of a channel (Chan et al.'s pairwise formula).
template <typename S>
void plane_stats(const S* y, double* mean, double* m2, int64_t P, int64_t hw, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t pl = 0; pl < P; ++pl) mean_m2(y + pl * hw, hw, mean[pl], m2[pl]);
}

// The k x k window means of one H x W plane into op ((H / k) x (W / k)): each window summed
// row by row, left to right, then divided by k * k (avg_pool2d's order).
template <typename S>
inline void pool_plane(const S* __restrict yp, S* __restrict op, int64_t H, int64_t W,
                       int64_t k) {
  const int64_t ho = H / k, wo = W / k;
  const S div = S(k * k);
  for (int64_t i = 0; i < ho; ++i) {
    S* __restrict acc = op + i * wo;
    for (int64_t j = 0; j < wo; ++j) acc[j] = S(0);
    for (int64_t r = 0; r < k; ++r) {
      const S* __restrict row = yp + (i * k + r) * W;
      for (int64_t j = 0; j < wo; ++j)
        for (int64_t c = 0; c < k; ++c) acc[j] += row[j * k + c];
    }
    for (int64_t j = 0; j < wo; ++j) acc[j] = acc[j] / div;
  }
}

// BatchNorm (batch statistics) followed by a tiling k x k average pool, as one op (the fused
// BN + AvgPool of masnn.layers.pool). Forward: per plane of H x W (H, W multiples of k), the
// plane's mean and squared deviations in double (as plane_stats) and the window means of y,
// from one read of the plane (it stays in cache): BN's affine map is applied later to the
// pooled tensor, since pooling is linear. Window means: pool_plane.
template <typename S>
void pool_plane_stats(const S* y, S* pooled, double* mean, double* m2, int64_t P, int64_t H,
                      int64_t W, int64_t k, int nthreads) {
  const int64_t hw = H * W, ho = H / k, wo = W / k;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t pl = 0; pl < P; ++pl) {
    const S* __restrict yp = y + pl * hw;
    mean_m2(yp, hw, mean[pl], m2[pl]);
    pool_plane(yp, pooled + pl * ho * wo, H, W, k);
  }
}

// A tiling k x k average pool (floor mode: trailing rows / columns that fill no window are
// skipped), P planes of H x W; avg_pool2d's arithmetic (windows summed row by row, left to
// right, then divided by k * k), so the result equals it bit for bit.
template <typename S>
void avg_pool(const S* y, S* pooled, int64_t P, int64_t H, int64_t W, int64_t k, int nthreads) {
  const int64_t hw = H * W, howo = (H / k) * (W / k);
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t pl = 0; pl < P; ++pl) pool_plane(y + pl * hw, pooled + pl * howo, H, W, k);
}

// The fused BN + AvgPool's second backward reduction, per plane: sum over the windows of
// g * (window mean of y - mean[c]), the window means recomputed as the forward did (so the
// pooled y is not kept for backward), summed in double. One read of y.
template <typename S>
void pool_grad_sums(const S* g, const S* y, const S* mean, double* part, int64_t P, int64_t C,
                    int64_t H, int64_t W, int64_t k, int nthreads) {
  const int64_t hw = H * W, howo = (H / k) * (W / k);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<S> pooled(static_cast<size_t>(howo));
#pragma omp for schedule(static)
    for (int64_t pl = 0; pl < P; ++pl) {
      const S mu = mean[pl % C];
      const S* __restrict gq = g + pl * howo;
      const S* __restrict pp = pooled.data();
      pool_plane(y + pl * hw, pooled.data(), H, W, k);
      double s = 0.0;
      for (int64_t q = 0; q < howo; ++q) s += double(gq[q] * (pp[q] - mu));
      part[pl] = s;
    }
  }
}

// The fused BN + AvgPool's input gradient from the pooled gradient g (P planes of ho x wo):
// dL/dy = (c0[c] + g[window] * ak[c]) + y * nb[c], with ak = a / k^2 (the pool's spread and
// BN's scale), c0 and nb = -b BN's per-channel terms (the caller's formula). One read of y,
// one write of dL/dy; the spread gradient is never materialised. gy may be y itself (the
// caller consumes a saved y nothing else holds): written in place.
template <typename S>
void pool_input_grad(const S* g, const S* y, S* gy, const S* ak, const S* c0, const S* nb,
                     int64_t P, int64_t C, int64_t H, int64_t W, int64_t k, int nthreads) {
  const int64_t hw = H * W, ho = H / k, wo = W / k;
  const bool inplace = static_cast<const void*>(gy) == static_cast<const void*>(y);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<S> term(static_cast<size_t>(W));
#pragma omp for schedule(static)
    for (int64_t pl = 0; pl < P; ++pl) {
      const int64_t ch = pl % C;
      const S a = ak[ch], z = c0[ch], n = nb[ch];
      const S* __restrict yp = inplace ? nullptr : y + pl * hw;
      S* __restrict gp = inplace ? nullptr : gy + pl * hw;
      const S* __restrict gq = g + pl * ho * wo;
      S* __restrict tp = term.data();
      for (int64_t i = 0; i < ho; ++i) {
        for (int64_t j = 0; j < wo; ++j) {
          const S v = z + gq[i * wo + j] * a;
          for (int64_t c = 0; c < k; ++c) tp[j * k + c] = v;
        }
        for (int64_t r = 0; r < k; ++r) {
          const int64_t off = (i * k + r) * W;
          if (inplace) {  // gy is y: each element read, then overwritten (one pointer)
            S* __restrict row = gy + pl * hw + off;
            for (int64_t w = 0; w < W; ++w) row[w] = tp[w] + row[w] * n;
          } else {
            for (int64_t w = 0; w < W; ++w) gp[off + w] = tp[w] + yp[off + w] * n;
          }
        }
      }
    }
  }
}

}  // namespace

extern "C" {

int64_t masnn_lif_chunk() { return CHUNK; }

// The number of blocks (entries of the per-block partial sums) for N neurons in planes of hw.
int64_t masnn_lif_blocks(int64_t N, int64_t hw) { return Blocks(N, hw).count; }

#define MASNN_ENTRIES(S, SUF)                                                                  \
  void masnn_lif_forward_##SUF(const S* x, const S* v0, S* spikes, S* u_save, S* v_last,      \
                               int64_t T, int64_t N, const Params* p, int nthreads) {         \
    forward<S, false>(x, v0, spikes, u_save, v_last, T, N, *p, nullptr, nthreads);           \
  }                                                                                            \
  void masnn_lif_backward_##SUF(const S* gs, const S* gvl, const S* x, const S* v0, S* gx,    \
                                S* gv0, double* pk, double* pg, int64_t T, int64_t N,         \
                                const Params* p, int nt) {                                     \
    backward<S>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, *p, nullptr, nt);              \
  }                                                                                            \
  void masnn_bnlif_forward_##SUF(const S* y, const S* scale, const S* shift, int64_t C,       \
                                 int64_t hw, const S* v0, S* spikes, S* v_last, int64_t T,    \
                                 int64_t N, const Params* p, int nthreads) {                   \
    const Affine<S> bn{scale, shift, nullptr, C, hw, nullptr, nullptr};                        \
    forward<S, true>(y, v0, spikes, nullptr, v_last, T, N, *p, &bn, nthreads);               \
  }                                                                                            \
  void masnn_bnlif_backward_##SUF(const S* gs, const S* gvl, const S* y, const S* scale,     \
                                  const S* shift, const S* mean, int64_t C, int64_t hw,       \
                                  const S* v0, S* gx, S* gv0, double* pk, double* pg,         \
                                  double* part_g, double* part_gy, int64_t T, int64_t N,      \
                                  const Params* p, int nt) {                                   \
    const Affine<S> bn{scale, shift, mean, C, hw, part_g, part_gy};                            \
    backward<S>(gs, gvl, y, v0, gx, gv0, pk, pg, T, N, *p, &bn, nt);                   \
  }                                                                                            \
  void masnn_bn_input_grad_##SUF(S* g, const S* y, const S* a, const S* d, const S* b,       \
                                 const S* mean, int64_t P, int64_t C, int64_t hw, int nt) {   \
    bn_input_grad<S>(g, y, a, d, b, mean, P, C, hw, nt);                                       \
  }                                                                                            \
  void masnn_bn_plane_stats_##SUF(const S* y, double* mean, double* m2, int64_t P,            \
                                  int64_t hw, int nt) {                                        \
    plane_stats<S>(y, mean, m2, P, hw, nt);                                                    \
  }                                                                                            \
  void masnn_bn_pool_stats_##SUF(const S* y, S* pooled, double* mean, double* m2, int64_t P,  \
                                 int64_t H, int64_t W, int64_t k, int nt) {                    \
    pool_plane_stats<S>(y, pooled, mean, m2, P, H, W, k, nt);                                  \
  }                                                                                            \
  void masnn_avg_pool_##SUF(const S* y, S* pooled, int64_t P, int64_t H, int64_t W, int64_t k, \
                            int nt) {                                                          \
    avg_pool<S>(y, pooled, P, H, W, k, nt);                                                    \
  }                                                                                            \
  void masnn_bn_pool_grad_sums_##SUF(const S* g, const S* y, const S* mean, double* part,      \
                                     int64_t P, int64_t C, int64_t H, int64_t W, int64_t k,   \
                                     int nt) {                                                 \
    pool_grad_sums<S>(g, y, mean, part, P, C, H, W, k, nt);                                    \
  }                                                                                            \
  void masnn_bn_pool_input_grad_##SUF(const S* g, const S* y, S* gy, const S* ak,             \
                                      const S* c0, const S* nb, int64_t P, int64_t C,         \
                                      int64_t H, int64_t W, int64_t k, int nt) {               \
    pool_input_grad<S>(g, y, gy, ak, c0, nb, P, C, H, W, k, nt);                               \
  }

MASNN_ENTRIES(float, f32)
MASNN_ENTRIES(double, f64)

}  // extern "C"
