// Event-driven inference kernels: convolution / linear layers as gather-accumulate of weight
// vectors over the active (spiking) inputs only, and the LIF update fused on the output side.
//
// Plain C ABI, compiled on first use by masnn/neurons/backends/kernel_build.py (same flags and
// cache as the fused LIF) and called through ctypes from masnn/inference/sparse.py.
//
// Layouts (float32 only):
// * A frame is one (t, b) pair, frame index f = t * B + b.
// * Spikes are compact index lists: idx[f * cap + i], i < cnt[f], each index the flat position of
//   an active neuron in channels-last order, n = (y * W + x) * C + c (a linear layer's input is
//   the 1 x 1 x F case). Indices within a frame are increasing.
// * Weights are transposed to [Cin, KH, KW, Cout]: every (active input, kernel tap) adds one
//   contiguous Cout vector to one output position, so the inner loop is a plain vector add
//   (accumulates, no multiplies) that the compiler turns into AVX code.
// * Scattered currents are channels-last frames [Ho, Wo, Cout]; a dense route's currents (torch's
//   conv) are standard [Cout, Ho, Wo] frames.
// * Membranes (v0, v_last) and dense spike outputs are standard (C, Ho, Wo) frames.
//
// The output side of every layer is the fused membrane kernel's step (membrane_cpu.cpp, included
// below): charge, the per-step membrane gates (CA / ECA / SimAM, then SA; none for a plain LIF),
// fire and reset, operation by operation as the reference masnn.neurons.functional with the
// reference gates. Only the currents differ from a dense convolution, by summation order.
#include <cstdint>
#include <cstring>
#include <vector>

#include "../neurons/backends/membrane_cpu.cpp"

namespace {

struct Geom {
  int64_t cin, h, w;       // input frame (channels-last)
  int64_t cout, ho, wo;    // output frame (channels-last)
  int64_t kh, kw, sh, sw, ph, pw;
};

// out[Ho, Wo, Cout] = bias + sum over the active inputs of their weight vectors.
inline void scatter_frame(const int32_t* __restrict idx, int64_t n, const float* __restrict wt,
                          const float* __restrict bias, const Geom& g, float* __restrict out) {
  const int64_t co = g.cout, npos = g.ho * g.wo;
  if (bias) {
    for (int64_t p = 0; p < npos; ++p) std::memcpy(out + p * co, bias, sizeof(float) * co);
  } else {
    std::memset(out, 0, sizeof(float) * npos * co);
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t a = idx[i];
    const int64_t c = a % g.cin, yx = a / g.cin;
    const int64_t x = yx % g.w, y = yx / g.w;
    // output row oy sees input row y through tap ky = y + ph - oy * sh, 0 <= ky < kh
    const int64_t ty = y + g.ph, tx = x + g.pw;
    int64_t oy0 = ty - g.kh + 1 > 0 ? (ty - g.kh + 1 + g.sh - 1) / g.sh : 0;
    int64_t oy1 = ty / g.sh;
    if (oy1 >= g.ho) oy1 = g.ho - 1;
    int64_t ox0 = tx - g.kw + 1 > 0 ? (tx - g.kw + 1 + g.sw - 1) / g.sw : 0;
    int64_t ox1 = tx / g.sw;
    if (ox1 >= g.wo) ox1 = g.wo - 1;
    const float* wc = wt + c * g.kh * g.kw * co;
    for (int64_t oy = oy0; oy <= oy1; ++oy) {
      const int64_t ky = ty - oy * g.sh;
      for (int64_t ox = ox0; ox <= ox1; ++ox) {
        const int64_t kx = tx - ox * g.sw;
        const float* __restrict wv = wc + (ky * g.kw + kx) * co;
        float* __restrict o = out + (oy * g.wo + ox) * co;
#pragma omp simd
        for (int64_t j = 0; j < co; ++j) o[j] += wv[j];
      }
    }
  }
}

// Spikes of a (C, HW) frame -> increasing channels-last indices (p * C + c). Returns the count.
inline int64_t emit_hwc(const float* __restrict sp, int64_t C, int64_t HW,
                        int32_t* __restrict out_idx) {
  // branch-free (spikes are unpredictable): always write, advance on a spike; m <= i < n
  int64_t m = 0;
  if (HW == 1) {
    for (int64_t c = 0; c < C; ++c) {
      out_idx[m] = int32_t(c);
      m += sp[c] != 0.0f;
    }
    return m;
  }
  for (int64_t q = 0; q < HW; ++q)
    for (int64_t c = 0; c < C; ++c) {
      out_idx[m] = int32_t(q * C + c);
      m += sp[c * HW + q] != 0.0f;
    }
  return m;
}

// Mean and max of one frame (TA's pools): 16 interleaved float lanes (the loop vectorises), added
// up in double.
inline void frame_stats(const float* __restrict xf, int64_t n, float* avg, float* mx) {
  constexpr int L = 16;
  float acc[L], m[L];
  for (int j = 0; j < L; ++j) {
    acc[j] = 0.0f;
    m[j] = xf[0];
  }
  int64_t i = 0;
  for (; i + L <= n; i += L)
    for (int j = 0; j < L; ++j) {
      acc[j] += xf[i + j];
      m[j] = xf[i + j] > m[j] ? xf[i + j] : m[j];
    }
  for (; i < n; ++i) {
    acc[0] += xf[i];
    m[0] = xf[i] > m[0] ? xf[i] : m[0];
  }
  double sum = 0.0;
  float best = m[0];
  for (int j = 0; j < L; ++j) {
    sum += double(acc[j]);
    best = m[j] > best ? m[j] : best;
  }
  *avg = float(sum / double(n));
  *mx = best;
}

// (HW, C) frame -> (C, HW) frame.
inline void to_chw(const float* __restrict hwc, int64_t C, int64_t HW, float* __restrict chw) {
  for (int64_t q = 0; q < HW; ++q)
    for (int64_t c = 0; c < C; ++c) chw[c * HW + q] = hwc[q * C + c];
}

}  // namespace

extern "C" {

// Currents only, frames in parallel (layers whose TA needs the whole window's currents first, and
// batches smaller than the thread count). idx: (F, cap_in) with counts cnt (F); out: (F, Ho * Wo
// * Cout); avg / mx: (F) each frame's mean and max (TA's pools, taken while the frame is in
// cache), or null.
void masnn_sparse_conv(const int32_t* idx, const int64_t* cnt, int64_t F, int64_t cap_in,
                       const float* wt, const float* bias, const Geom* g, float* out, float* avg,
                       float* mx, int nthreads) {
  const int64_t nout = g->ho * g->wo * g->cout;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t f = 0; f < F; ++f) {
    scatter_frame(idx + f * cap_in, cnt[f], wt, bias, *g, out + f * nout);
    if (avg) frame_stats(out + f * nout, nout, avg + f, mx + f);
  }
}

// One layer's output side, fused: per sample (in parallel), per step: the step's current frame,
// optionally scaled by a per-frame gain (TA's weight g[t, b]: X = g X), then the membrane step
// (charge, gates, fire, reset) that emits the next layer's index list. The current comes from
//   * idx / cnt (F, cap_in): input spikes, scattered into a private frame (gather-accumulate);
//   * else cur (T, B, N): dense currents, (C, HW) frames if cur_chw else (HW, C) frames.
// d: the membrane kernel's sizes (C, H, W = Cout, Ho, Wo; the gate kind and sizes); w0 / w1 /
// wsa: the gate weights (see membrane_cpu.cpp). v0: (B, N) or null; out_idx: (T, B, N),
// out_cnt: (T, B), v_last: (B, N), dense: (T, B, N) spikes or null.
void masnn_sparse_layer(const int32_t* idx, const int64_t* cnt, int64_t cap_in, const float* cur,
                        int32_t cur_chw, const float* scale, const float* wt, const float* bias,
                        const Geom* g, const Dims* d, const float* w0, const float* w1,
                        const float* wsa, const Params* p, const float* v0, int32_t* out_idx,
                        int64_t* out_cnt, float* v_last, float* dense, int nthreads) {
  const int64_t T = d->T, B = d->B, C = d->C, HW = d->H * d->W, n = C * HW;
  const int64_t ST = stat_size(*d);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t b = 0; b < B; ++b) {
    std::vector<float> hwc(n), x(n), at(n), bb(n), uu(n), st(ST > 0 ? ST : 1), sp(n);
    float* v = v_last + b * n;
    if (v0) std::memcpy(v, v0 + b * n, sizeof(float) * n);
    else std::memset(v, 0, sizeof(float) * n);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t f = t * B + b;
      const float* xf;
      if (idx) {
        scatter_frame(idx + f * cap_in, cnt[f], wt, bias, *g, hwc.data());
        xf = hwc.data();
      } else {
        xf = cur + f * n;
      }
      if (HW > 1 && (idx || !cur_chw)) {
        to_chw(xf, C, HW, x.data());
        xf = x.data();
      }
      if (scale) {
        const float gf = scale[f];
        float* xs = x.data();
        for (int64_t i = 0; i < n; ++i) xs[i] = gf * xf[i];
        xf = xs;
      }
      float* spf = dense ? dense + f * n : sp.data();
      membrane_step(xf, v, at.data(), bb.data(), uu.data(), st.data(), spf, w0, w1, wsa, *d, *p);
      out_cnt[f] = emit_hwc(spf, C, HW, out_idx + f * n);
    }
  }
}

// Per-frame mean and max of (F, N) frames (TA's pools over every axis but time).
void masnn_sparse_frame_stats(const float* x, int64_t F, int64_t n, float* avg, float* mx,
                              int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t f = 0; f < F; ++f) frame_stats(x + f * n, n, avg + f, mx + f);
}

// Dense 0/1 frames (F, N) -> index lists (F, N) + counts (F). The frames are (C, HW) (channels
// first, indices emitted channels-last) when c > 0, else already in index order.
void masnn_sparse_compress(const float* x, int64_t F, int64_t n, int64_t c, int32_t* out_idx,
                           int64_t* out_cnt, int nthreads) {
  const int64_t C = c > 0 ? c : n, HW = n / C;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t f = 0; f < F; ++f) out_cnt[f] = emit_hwc(x + f * n, C, HW, out_idx + f * n);
}

// Index lists -> dense 0/1 frames (F, N).
void masnn_sparse_expand(const int32_t* idx, const int64_t* cnt, int64_t F, int64_t cap,
                         int64_t n, float* out, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t f = 0; f < F; ++f) {
    float* of = out + f * n;
    std::memset(of, 0, sizeof(float) * n);
    const int32_t* ix = idx + f * cap;
    for (int64_t i = 0; i < cnt[f]; ++i) of[ix[i]] = 1.0f;
  }
}

}  // extern "C"
