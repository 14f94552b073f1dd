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

namespace {

constexpr int64_t CHUNK = 512;

struct Params {
  double leak;      // k: U = V + k (v_rest - V) + g X
  double v_rest;
  double gain;      // g
  double v_th;
  double decay;     // delta
  double v_reset;   // hard reset value (ignored for soft reset)
  int32_t hard;     // 1 = hard reset, 0 = soft reset by v_th
  int32_t detach;   // detach_reset
  int32_t strict;   // fire on u - v_th > 0 instead of >= 0
  int32_t surrogate;  // 0 rect (param = width), 1 sigmoid (alpha), 2 atan (alpha)
  double sg_param;
  int32_t has_leak;   // k != 0 (or a tensor): the reference skips the leak term otherwise
  int32_t has_gain;   // g != 1
  int32_t has_decay;  // delta != 1
  int32_t has_vreset; // v_reset != 0
};

template <typename S>
inline S charge(S v, S x, S k, S vr, S g, const Params& p) {
  S u = p.has_leak ? v + k * (vr - v) : v;
  return p.has_gain ? u + g * x : u + x;
}

template <typename S>
inline S fire(S u, S th, const Params& p) {
  S h = u - th;
  return (p.strict ? (h > S(0)) : (h >= S(0))) ? S(1) : S(0);
}

template <typename S>
inline S reset(S u, S s, S th, S dec, S vres, const Params& p) {
  if (!p.hard) {
    S v = u - s * th;
    return p.has_decay ? dec * v : v;
  }
  S kept = p.has_decay ? dec * u : u;
  S v = kept * (S(1) - s);
  return p.has_vreset ? v + s * vres : v;
}

template <typename S>
inline S surrogate_grad(S h, const Params& p) {
  const S a = S(p.sg_param);
  if (p.surrogate == 0) {  // rect: (|h| < w/2) / w
    return (std::fabs(h) < a / S(2)) ? S(1) / a : S(0);
  }
  if (p.surrogate == 1) {  // sigmoid: a s (1 - s)
    S s = S(1) / (S(1) + std::exp(-(a * h)));
    return a * s * (S(1) - s);
  }
  S z = S(M_PI / 2) * a * h;  // atan: (a/2) / (1 + (pi/2 a h)^2)
  return (a / S(2)) / (S(1) + z * z);
}

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

// grad_s: (T, N) or null (zeros); grad_vlast: (N) or null; u: saved (T, N) pre-reset membranes;
// x: (T, N), needed only for grad_gain; v0: (N) or null (zeros), needed only for grad_leak.
// grad_x: (T, N) out; grad_v0: (N) out or null; part_leak / part_gain: (nchunks) out or null,
// per-block partial sums (summed by the caller in a fixed order: deterministic).
template <typename S>
void backward(const S* grad_s, const S* grad_vlast, const S* u, const S* x, const S* v0,
              S* grad_x, S* grad_v0, double* part_leak, double* part_gain, int64_t T, int64_t N,
              const Params& p, int nthreads) {
  const S k = S(p.leak), vr = S(p.v_rest), g = S(p.gain), th = S(p.v_th), dec = S(p.decay),
          vres = S(p.v_reset);
  const S one_minus_k = p.has_leak ? S(1) - k : S(1);
  const int64_t nchunks = (N + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t n0 = c * CHUNK;
    const int64_t len = (N - n0) < CHUNK ? (N - n0) : CHUNK;
    S gv[CHUNK];
    S acc_k[CHUNK];
    S acc_g[CHUNK];
    for (int64_t i = 0; i < len; ++i) {
      gv[i] = grad_vlast ? grad_vlast[n0 + i] : S(0);
      acc_k[i] = S(0);
      acc_g[i] = S(0);
    }
    for (int64_t t = T - 1; t >= 0; --t) {
      const S* ut = u + t * N + n0;
      const S* gst = grad_s ? grad_s + t * N + n0 : nullptr;
      S* gxt = grad_x + t * N + n0;
      for (int64_t i = 0; i < len; ++i) {
        const S ui = ut[i];
        const S h = ui - th;
        const S s = fire(ui, th, p);
        const S sg = surrogate_grad(h, p);
        const S gvi = gv[i];
        S gs = gst ? gst[i] : S(0);
        S gu;
        if (p.hard) {
          if (!p.detach) gs = gs + gvi * (vres - (p.has_decay ? dec * ui : ui));
          gu = sg * gs + gvi * (p.has_decay ? dec : S(1)) * (S(1) - s);
        } else {
          if (!p.detach) gs = gs - gvi * (p.has_decay ? dec : S(1)) * th;
          gu = sg * gs + gvi * (p.has_decay ? dec : S(1));
        }
        gxt[i] = p.has_gain ? g * gu : gu;
        gv[i] = one_minus_k * gu;
        if (part_leak) {
          S vprev;
          if (t > 0) {
            const S up = u[(t - 1) * N + n0 + i];
            vprev = reset(up, fire(up, th, p), th, dec, vres, p);
          } else {
            vprev = v0 ? v0[n0 + i] : S(0);
          }
          acc_k[i] = acc_k[i] + gu * (vr - vprev);
        }
        if (part_gain) acc_g[i] = acc_g[i] + gu * x[t * N + n0 + i];
      }
    }
    if (grad_v0)
      for (int64_t i = 0; i < len; ++i) grad_v0[n0 + i] = gv[i];
    if (part_leak) {
      double sum = 0.0;
      for (int64_t i = 0; i < len; ++i) sum += double(acc_k[i]);
      part_leak[c] = sum;
    }
    if (part_gain) {
      double sum = 0.0;
      for (int64_t i = 0; i < len; ++i) sum += double(acc_g[i]);
      part_gain[c] = sum;
    }
  }
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

void masnn_lif_backward_f32(const float* grad_s, const float* grad_vlast, const float* u,
                            const float* x, const float* v0, float* grad_x, float* grad_v0,
                            double* part_leak, double* part_gain, int64_t T, int64_t N,
                            const Params* p, int nthreads) {
  backward<float>(grad_s, grad_vlast, u, x, v0, grad_x, grad_v0, part_leak, part_gain, T, N, *p,
                  nthreads);
}

void masnn_lif_backward_f64(const double* grad_s, const double* grad_vlast, const double* u,
                            const double* x, const double* v0, double* grad_x, double* grad_v0,
                            double* part_leak, double* part_gain, int64_t T, int64_t N,
                            const Params* p, int nthreads) {
  backward<double>(grad_s, grad_vlast, u, x, v0, grad_x, grad_v0, part_leak, part_gain, T, N, *p,
                   nthreads);
}

}  // extern "C"
