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

template <typename S>
void forward(const S* x, const S* v0, S* spikes, S* u_save, S* v_last, int64_t T, int64_t N,
             const Params& p, int nthreads) {
  const S k = S(p.leak), vr = S(p.v_rest), g = S(p.gain), th = S(p.v_th), dec = S(p.decay),
          vres = S(p.v_reset);
  const int64_t nchunks = (N + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t n0 = c * CHUNK;
    const int64_t len = (N - n0) < CHUNK ? (N - n0) : CHUNK;
    S v[CHUNK];
    for (int64_t i = 0; i < len; ++i) v[i] = v0 ? v0[n0 + i] : S(0);
    for (int64_t t = 0; t < T; ++t) {
      const S* xt = x + t * N + n0;
      S* st = spikes + t * N + n0;
      S* ut = u_save ? u_save + t * N + n0 : nullptr;
      for (int64_t i = 0; i < len; ++i) {
        S u = charge(v[i], xt[i], k, vr, g, p);
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
template <typename S, int SG, bool HARD, bool DETACH, bool STRICT, bool NEED_K, bool NEED_G>
void backward_t(const S* grad_s, const S* grad_vlast, const S* x, const S* v0, S* grad_x,
                S* grad_v0, double* part_leak, double* part_gain, int64_t T, int64_t N,
                const Params& p, int nthreads) {
  // the forward pass's constants (for the recomputation)
  const S fk = S(p.leak), fvr = S(p.v_rest), fg = S(p.gain), fth = S(p.v_th), fdec = S(p.decay),
          fvres = S(p.v_reset);
  const S k = p.has_leak ? S(p.leak) : S(0), vr = S(p.v_rest);
  const S g = p.has_gain ? S(p.gain) : S(1), th = S(p.v_th);
  const S dec = p.has_decay ? S(p.decay) : S(1), vres = p.has_vreset ? S(p.v_reset) : S(0);
  const S a = S(p.sg_param);
  const S one_minus_k = S(1) - k;
  const int64_t nchunks = (N + CHUNK - 1) / CHUNK;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<S> ubuf(static_cast<size_t>(T) * CHUNK);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t n0 = c * CHUNK;
      const int64_t len = (N - n0) < CHUNK ? (N - n0) : CHUNK;
      S gv[CHUNK];
      S acc_k[CHUNK];
      S acc_g[CHUNK];
      S vprev[CHUNK];
      // recompute U[t] of this block (as forward() does)
      for (int64_t i = 0; i < len; ++i) gv[i] = v0 ? v0[n0 + i] : S(0);  // gv: V, for now
      for (int64_t t = 0; t < T; ++t) {
        const S* xt = x + t * N + n0;
        S* ut = ubuf.data() + t * CHUNK;
        for (int64_t i = 0; i < len; ++i) {
          S u = charge(gv[i], xt[i], fk, fvr, fg, p);
          S s = fire(u, fth, p);
          ut[i] = u;
          gv[i] = reset(u, s, fth, fdec, fvres, p);
        }
      }
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
          if (NEED_G) acc_g[i] = acc_g[i] + gu * x[t * N + n0 + i];
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
    }
  }
}

template <typename S, int SG, bool HARD, bool DETACH, bool STRICT>
void backward_k(const S* gs, const S* gvl, const S* x, const S* v0, S* gx, S* gv0,
                double* pk, double* pg, int64_t T, int64_t N, const Params& p, int nt) {
  if (pk && pg)
    backward_t<S, SG, HARD, DETACH, STRICT, true, true>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt);
  else if (pk)
    backward_t<S, SG, HARD, DETACH, STRICT, true, false>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt);
  else if (pg)
    backward_t<S, SG, HARD, DETACH, STRICT, false, true>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt);
  else
    backward_t<S, SG, HARD, DETACH, STRICT, false, false>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt);
}

template <typename S, int SG>
void backward_s(const S* gs, const S* gvl, const S* x, const S* v0, S* gx, S* gv0,
                double* pk, double* pg, int64_t T, int64_t N, const Params& p, int nt) {
  const int key = (p.hard ? 4 : 0) | (p.detach ? 2 : 0) | (p.strict ? 1 : 0);
  switch (key) {
    case 0: backward_k<S, SG, false, false, false>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt); break;
    case 1: backward_k<S, SG, false, false, true>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt); break;
    case 2: backward_k<S, SG, false, true, false>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt); break;
    case 3: backward_k<S, SG, false, true, true>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt); break;
    case 4: backward_k<S, SG, true, false, false>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt); break;
    case 5: backward_k<S, SG, true, false, true>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt); break;
    case 6: backward_k<S, SG, true, true, false>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt); break;
    default: backward_k<S, SG, true, true, true>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt); break;
  }
}

template <typename S>
void backward(const S* gs, const S* gvl, const S* x, const S* v0, S* gx, S* gv0,
              double* pk, double* pg, int64_t T, int64_t N, const Params& p, int nt) {
  with_surrogate(p.surrogate, [&](auto sg) {
    backward_s<S, decltype(sg)::value>(gs, gvl, x, v0, gx, gv0, pk, pg, T, N, p, nt);
  });
}

}  // namespace

extern "C" {

int64_t masnn_lif_chunk() { return CHUNK; }

void masnn_lif_forward_f32(const float* x, const float* v0, float* spikes, float* u_save,
                           float* v_last, int64_t T, int64_t N, const Params* p, int nthreads) {
  forward<float>(x, v0, spikes, u_save, v_last, T, N, *p, nthreads);
}

void masnn_lif_forward_f64(const double* x, const double* v0, double* spikes, double* u_save,
                           double* v_last, int64_t T, int64_t N, const Params* p, int nthreads) {
  forward<double>(x, v0, spikes, u_save, v_last, T, N, *p, nthreads);
}

void masnn_lif_backward_f32(const float* grad_s, const float* grad_vlast, const float* x,
                            const float* v0, float* grad_x, float* grad_v0, double* part_leak,
                            double* part_gain, int64_t T, int64_t N, const Params* p,
                            int nthreads) {
  backward<float>(grad_s, grad_vlast, x, v0, grad_x, grad_v0, part_leak, part_gain, T, N, *p,
                  nthreads);
}

void masnn_lif_backward_f64(const double* grad_s, const double* grad_vlast, const double* x,
                            const double* v0, double* grad_x, double* grad_v0, double* part_leak,
                            double* part_gain, int64_t T, int64_t N, const Params* p,
                            int nthreads) {
  backward<double>(grad_s, grad_vlast, x, v0, grad_x, grad_v0, part_leak, part_gain, T, N, *p,
                   nthreads);
}

}  // extern "C"
