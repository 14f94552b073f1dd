// Event-driven inference kernels: convolution / linear layers as gather-accumulate of weight
// vectors over the active (spiking) inputs only, and the LIF update fused on the output side.
//
// Plain C ABI, compiled on first use by masnn/neurons/backends/_build.py (same flags and cache
// as the fused LIF) and called through ctypes from masnn/inference/sparse.py.
//
// Layouts (float32 only):
// * A frame is one (t, b) pair, frame index f = t * B + b.
// * Spikes are compact index lists: idx[f * cap + i], i < cnt[f], each index the flat position of
//   an active neuron in channels-last order, n = (y * W + x) * C + c (a linear layer's input is
//   the 1 x 1 x F case). Indices within a frame are increasing.
// * Weights are transposed to [Cin, KH, KW, Cout]: every (active input, kernel tap) adds one
//   contiguous Cout vector to one output position, so the inner loop is a plain vector add
//   (accumulates, no multiplies) that the compiler turns into AVX code.
// * Currents / membranes are channels-last frames [Ho, Wo, Cout].
//
// The LIF arithmetic is the fused LIF kernel's (charge / fire / reset from lif_cpu.cpp, included
// below), itself equal to the reference masnn.neurons.functional bit for bit; only the currents
// differ from a dense convolution, by summation order.
#include <cstdint>
#include <cstring>
#include <vector>

#include "../neurons/backends/lif_cpu.cpp"

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

// One LIF step over a frame of currents; appends the spiking neurons' indices. Returns the count.
inline int64_t lif_frame(const float* __restrict cur, float* __restrict v, int64_t n,
                         const Params& p, int32_t* __restrict out_idx, float* __restrict dense) {
  const float k = float(p.leak), vr = float(p.v_rest), gn = float(p.gain), th = float(p.v_th),
              dec = float(p.decay), vres = float(p.v_reset);
  int64_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float u = charge(v[i], cur[i], k, vr, gn, p);
    const float s = fire(u, th, p);
    v[i] = reset(u, s, th, dec, vres, p);
    if (dense) dense[i] = s;
    if (s != 0.0f) out_idx[m++] = int32_t(i);
  }
  return m;
}

}  // namespace

extern "C" {

// Currents only (for layers whose attention needs the whole current): frames in parallel.
// idx: (F, cap_in) with counts cnt (F); out: (F, Ho * Wo * Cout).
void masnn_sparse_conv(const int32_t* idx, const int64_t* cnt, int64_t F, int64_t cap_in,
                       const float* wt, const float* bias, const Geom* g, float* out,
                       int nthreads) {
  const int64_t nout = g->ho * g->wo * g->cout;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t f = 0; f < F; ++f) scatter_frame(idx + f * cap_in, cnt[f], wt, bias, *g, out + f * nout);
}

// Conv / linear + LIF, fused: per sample (in parallel), per step: scatter into a private current
// frame, then the LIF update that emits the next layer's index list. v0: (B, N) or null;
// out_idx: (T, B, N), out_cnt: (T, B), v_last: (B, N), dense: (T, B, N) spikes or null.
void masnn_sparse_conv_lif(const int32_t* idx, const int64_t* cnt, int64_t T, int64_t B,
                           int64_t cap_in, const float* wt, const float* bias, const Geom* g,
                           const Params* p, const float* v0, int32_t* out_idx, int64_t* out_cnt,
                           float* v_last, float* dense, int nthreads) {
  const int64_t n = g->ho * g->wo * g->cout;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t b = 0; b < B; ++b) {
    std::vector<float> cur(n);
    float* v = v_last + b * n;
    if (v0) std::memcpy(v, v0 + b * n, sizeof(float) * n);
    else std::memset(v, 0, sizeof(float) * n);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t f = t * B + b;
      scatter_frame(idx + f * cap_in, cnt[f], wt, bias, *g, cur.data());
      out_cnt[f] = lif_frame(cur.data(), v, n, *p, out_idx + f * n, dense ? dense + f * n : nullptr);
    }
  }
}

// LIF over dense currents (T, B, N) (the encoder layer, or any layer run densely) that emits
// index lists; same outputs as masnn_sparse_conv_lif.
void masnn_sparse_lif(const float* cur, int64_t T, int64_t B, int64_t n, const Params* p,
                      const float* v0, int32_t* out_idx, int64_t* out_cnt, float* v_last,
                      float* dense, int nthreads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
  for (int64_t b = 0; b < B; ++b) {
    float* v = v_last + b * n;
    if (v0) std::memcpy(v, v0 + b * n, sizeof(float) * n);
    else std::memset(v, 0, sizeof(float) * n);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t f = t * B + b;
      out_cnt[f] = lif_frame(cur + f * n, v, n, *p, out_idx + f * n, dense ? dense + f * n : nullptr);
    }
  }
}

// Dense 0/1 frames (F, N) -> index lists (F, N) + counts (F).
void masnn_sparse_compress(const float* x, int64_t F, int64_t n, int32_t* out_idx,
                           int64_t* out_cnt, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t f = 0; f < F; ++f) {
    const float* xf = x + f * n;
    int32_t* o = out_idx + f * n;
    int64_t m = 0;
    for (int64_t i = 0; i < n; ++i)
      if (xf[i] != 0.0f) o[m++] = int32_t(i);
    out_cnt[f] = m;
  }
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
