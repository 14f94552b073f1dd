// Fused multi-step LIF with per-step membrane attention (paper Eq. 14) for CPU tensors.
//
// Plain C ABI (no torch headers): masnn/neurons/backends/membrane.py compiles this file on first
// use (kernel_build.load_shared), caches the library and calls it through ctypes.
//
// One step of one sample, on the (C, HW) membrane:
//   A = charge(V[t-1], X[t])                                  (lif_common.h)
//   CA: a = mean_HW(A), m = max_HW(A); l = W1 relu(W0 a) + W1 relu(W0 m); gc = sigmoid(l)
//       B = gc[c] * A                                          (no biases: the reference's MLP)
//   or ECA: a = mean_HW(A); l = conv1d_k(a) over channels (zero padding k/2, no bias);
//       gc = sigmoid(l); B = gc[c] * A
//   or SimAM: mu = mean_HW(A), D = (A - mu)^2, var = sum_HW(D) / max(HW - 1, 1);
//       B = sigmoid(D / (4 (var + lam)) + 1/2) * A   (per element, no weights)
//   SA: P = [mean_C(B); max_C(B)] (2, H, W); o = conv_kxk(P, Wsa, zero padding k/2)
//       gs = sigmoid(o); U = gs[p] * B
//   S = fire(U); V[t] = reset(U, S)
// Either gate may be absent (then B = A, or U = B). Samples are independent (the gates pool
// within one sample and one step), so OpenMP splits the batch; every per-sample result, and
// the per-sample partial sums of the weight gradients (reduced afterwards in a fixed order),
// never depend on the thread count.
//
// Saved for backward (when asked): A (T, B, C, HW) and per (t, b) the small gate statistics
// (CA: a, m, W0 a, W0 m, gc; SA: P, gs): 3C + 2h + 3HW values. The backward pass recomputes B,
// U, the spikes and (for a learnable leak) V[t-1] from them. Max-pool gradients are shared
// evenly between tied maxima, as torch's amax. dL/dX may be written into A's own buffer: step
// t (backward runs t = T-1 .. 0) reads A[t] and A[t-1], then writes dL/dX[t] last.
#include <cmath>
#include <cstdint>
#include <vector>

#include "lif_common.h"

namespace {

using namespace masnn_lif;

struct Dims {
  int64_t T, B, C, H, W, hid, k;
  int32_t has_ca;  // 0 none, 1 CA (CBAM MLP, hid = h), 2 ECA (hid = its 1-D kernel size),
                   // 3 SimAM
  int32_t has_sa;
  double lam;      // SimAM's lambda
};

inline int64_t ca_size(const Dims& d) {  // SimAM: mu, var
  return d.has_ca == 1 ? 3 * d.C + 2 * d.hid : (d.has_ca >= 2 ? 2 * d.C : 0);
}
// offset of the channel gate gc in a step's statistics
inline int64_t gc_offset(const Dims& d) { return d.has_ca == 1 ? 2 * d.C + 2 * d.hid : d.C; }
inline int64_t stat_size(const Dims& d) {
  return ca_size(d) + (d.has_sa ? 3 * d.H * d.W : 0);
}

// fire(), or the surrogate's primitive under Params.smooth (tests only)
template <typename S>
inline S spike(S u, S th, const Params& p) {
  return p.smooth ? primitive(u - th, p.surrogate, S(p.sg_param)) : fire(u, th, p);
}

template <typename S>
inline S sigmoid(S x) {
  return S(1) / (S(1) + std::exp(-x));
}

// sum_i a[i] * b[i] over 8 interleaved lanes (the loop vectorises), added up in a fixed order.
template <typename S>
inline S dot8(const S* __restrict a, const S* __restrict b, int64_t n) {
  S acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// CA on a (C, HW) membrane `a`: fills st[0:3C+2h] and writes gc[c] * a to `out`.
template <typename S>
void ca_forward(const S* a, S* out, S* st, const S* w0, const S* w1, const Dims& d) {
  const int64_t C = d.C, HW = d.H * d.W, hid = d.hid;
  S* avg = st;
  S* mx = st + C;
  S* za = st + 2 * C;
  S* zm = za + hid;
  S* gc = zm + hid;
  for (int64_t c = 0; c < C; ++c) {
    // 8 interleaved lanes (the loop vectorises), added up in a fixed order
    const S* ac = a + c * HW;
    S acc[8], mm[8];
    for (int j = 0; j < 8; ++j) {
      acc[j] = S(0);
      mm[j] = ac[0];
    }
    int64_t p = 0;
    for (; p + 8 <= HW; p += 8)
      for (int j = 0; j < 8; ++j) {
        acc[j] += ac[p + j];
        mm[j] = ac[p + j] > mm[j] ? ac[p + j] : mm[j];
      }
    for (; p < HW; ++p) {
      acc[0] += ac[p];
      mm[0] = ac[p] > mm[0] ? ac[p] : mm[0];
    }
    S sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    S m = mm[0];
    for (int j = 1; j < 8; ++j) m = mm[j] > m ? mm[j] : m;
    avg[c] = sum / S(HW);
    mx[c] = m;
  }
  for (int64_t j = 0; j < hid; ++j) {
    S sa = S(0), sm = S(0);
    for (int64_t c = 0; c < C; ++c) {
      sa += w0[j * C + c] * avg[c];
      sm += w0[j * C + c] * mx[c];
    }
    za[j] = sa;
    zm[j] = sm;
  }
  for (int64_t c = 0; c < C; ++c) {
    S la = S(0), lm = S(0);
    for (int64_t j = 0; j < hid; ++j) {
      la += w1[c * hid + j] * (za[j] > S(0) ? za[j] : S(0));
      lm += w1[c * hid + j] * (zm[j] > S(0) ? zm[j] : S(0));
    }
    gc[c] = sigmoid(la + lm);
  }
  for (int64_t c = 0; c < C; ++c) {
    const S g = gc[c];
    for (int64_t p = 0; p < HW; ++p) out[c * HW + p] = g * a[c * HW + p];
  }
}

// ECA on a (C, HW) membrane `a`: fills st[0:2C] (a, gc) and writes gc[c] * a to `out`.
template <typename S>
void eca_forward(const S* a, S* out, S* st, const S* w, const Dims& d) {
  const int64_t C = d.C, HW = d.H * d.W, k = d.hid, r = k / 2;
  S* avg = st;
  S* gc = st + C;
  for (int64_t c = 0; c < C; ++c) {
    S sum = S(0);
    for (int64_t p = 0; p < HW; ++p) sum += a[c * HW + p];
    avg[c] = sum / S(HW);
  }
  for (int64_t c = 0; c < C; ++c) {
    S l = S(0);
    for (int64_t j = 0; j < k; ++j) {
      const int64_t cc = c + j - r;
      if (cc >= 0 && cc < C) l += w[j] * avg[cc];
    }
    gc[c] = sigmoid(l);
  }
  for (int64_t c = 0; c < C; ++c)
    for (int64_t p = 0; p < HW; ++p) out[c * HW + p] = gc[c] * a[c * HW + p];
}

// SimAM's gate of one element from its channel's mean and variance (forward and recompute).
template <typename S>
inline S simam_gate(S a, S mu, S var, S lam) {
  const S dv = (a - mu) * (a - mu);
  return sigmoid(dv / (S(4) * (var + lam)) + S(0.5));
}

// SimAM on a (C, HW) membrane `a`: fills st[0:2C] (mu, var) and writes g * a to `out`.
template <typename S>
void simam_forward(const S* a, S* out, S* st, const Dims& d) {
  const int64_t C = d.C, HW = d.H * d.W;
  const S lam = S(d.lam), m = S(HW - 1 > 1 ? HW - 1 : 1);
  for (int64_t c = 0; c < C; ++c) {
    const S* ac = a + c * HW;
    S sum = S(0);
    for (int64_t p = 0; p < HW; ++p) sum += ac[p];
    const S mu = sum / S(HW);
    S ss = S(0);
    for (int64_t p = 0; p < HW; ++p) ss += (ac[p] - mu) * (ac[p] - mu);
    const S var = ss / m;
    st[c] = mu;
    st[C + c] = var;
    for (int64_t p = 0; p < HW; ++p) out[c * HW + p] = simam_gate(ac[p], mu, var, lam) * ac[p];
  }
}

// SA on a (C, HW) membrane `b`: fills st[0:3HW] (P avg, P max, gs) and writes gs[p] * b to `out`.
template <typename S>
void sa_forward(const S* b, S* out, S* st, const S* wsa, const Dims& d) {
  const int64_t C = d.C, H = d.H, W = d.W, HW = H * W, k = d.k, r = k / 2;
  S* pavg = st;
  S* pmax = st + HW;
  S* gs = st + 2 * HW;
  for (int64_t p = 0; p < HW; ++p) {
    pavg[p] = S(0);
    pmax[p] = b[p];
  }
  for (int64_t c = 0; c < C; ++c)
    for (int64_t p = 0; p < HW; ++p) {
      const S v = b[c * HW + p];
      pavg[p] += v;
      pmax[p] = v > pmax[p] ? v : pmax[p];
    }
  for (int64_t p = 0; p < HW; ++p) pavg[p] = pavg[p] / S(C);
  // o[y, x] = sum over (ch, dy, dx), in that order, of wsa * P[ch, y + dy - r, x + dx - r]
  // (zero padding: out-of-range taps are skipped); one output row at a time, so the inner loop
  // runs over x (vectorised) while every output still adds its taps in the same order.
  for (int64_t y = 0; y < H; ++y) {
    S* o = gs + y * W;
    for (int64_t x = 0; x < W; ++x) o[x] = S(0);
    for (int64_t ch = 0; ch < 2; ++ch) {
      const S* P = st + ch * HW;
      for (int64_t dy = 0; dy < k; ++dy) {
        const int64_t yy = y + dy - r;
        if (yy < 0 || yy >= H) continue;
        for (int64_t dx = 0; dx < k; ++dx) {
          const S wv = wsa[(ch * k + dy) * k + dx];
          const int64_t x0 = r - dx > 0 ? r - dx : 0, x1 = W + r - dx < W ? W + r - dx : W;
          const S* row = P + yy * W;
          for (int64_t x = x0; x < x1; ++x) o[x] += wv * row[x + dx - r];
        }
      }
    }
    for (int64_t x = 0; x < W; ++x) o[x] = sigmoid(o[x]);
  }
  for (int64_t c = 0; c < C; ++c)
    for (int64_t p = 0; p < HW; ++p) out[c * HW + p] = gs[p] * b[c * HW + p];
}

// A -> U for one (t, b), from saved statistics (recomputation: the forward's exact roundings).
template <typename S>
void gated(const S* a, const S* st, S* b_out, S* u_out, const Dims& d) {
  const int64_t C = d.C, HW = d.H * d.W;
  const S* gc = (d.has_ca == 1 || d.has_ca == 2) ? st + gc_offset(d) : nullptr;
  const S* gs = d.has_sa ? st + ca_size(d) + 2 * HW : nullptr;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t p = 0; p < HW; ++p) {
      const int64_t i = c * HW + p;
      const S bv = gc ? gc[c] * a[i]
                      : (d.has_ca == 3 ? simam_gate(a[i], st[c], st[C + c], S(d.lam)) * a[i]
                                       : a[i]);
      if (b_out) b_out[i] = bv;
      u_out[i] = gs ? gs[p] * bv : bv;
    }
}

// One step of one sample (the whole forward recurrence body): A = charge(V, X[t]) into `at`,
// the gates (statistics into `st`), fire into `sp`, reset into `v` (updated in place). `bb`,
// `uu`: (C, HW) scratch. Shared with the sparse inference kernel (masnn/inference/sparse_cpu.cpp),
// so both run the same arithmetic.
template <typename S>
inline void membrane_step(const S* xt, S* v, S* at, S* bb, S* uu, S* st, S* sp, const S* w0,
                          const S* w1, const S* wsa, const Dims& d, const Params& params) {
  const Params p = params;  // a local copy: provably not aliased by the stores (the flag tests
                            // leave the loops, which vectorise)
  const S k = S(p.leak), vr = S(p.v_rest), g = S(p.gain), th = S(p.v_th), dec = S(p.decay),
          vres = S(p.v_reset);
  const int64_t N = d.C * d.H * d.W;
  for (int64_t i = 0; i < N; ++i) at[i] = charge(v[i], xt[i], k, vr, g, p);
  const S* cur = at;
  if (d.has_ca == 1) {
    ca_forward(cur, bb, st, w0, w1, d);
    cur = bb;
  } else if (d.has_ca == 2) {
    eca_forward(cur, bb, st, w0, d);
    cur = bb;
  } else if (d.has_ca == 3) {
    simam_forward(cur, bb, st, d);
    cur = bb;
  }
  if (d.has_sa) {
    sa_forward(cur, uu, st + ca_size(d), wsa, d);
    cur = uu;
  }
  if (p.smooth) {  // tests only; kept out of the plain loop, which then vectorises
    for (int64_t i = 0; i < N; ++i) {
      const S u = cur[i];
      const S s = spike(u, th, p);
      sp[i] = s;
      v[i] = reset(u, s, th, dec, vres, p);
    }
    return;
  }
  for (int64_t i = 0; i < N; ++i) {
    const S u = cur[i];
    const S s = fire(u, th, p);
    sp[i] = s;
    v[i] = reset(u, s, th, dec, vres, p);
  }
}

template <typename S>
void forward(const S* x, const S* v0, S* spikes, S* a_save, S* stats, S* v_last, const S* w0,
             const S* w1, const S* wsa, const Dims& d, const Params& p, int nthreads) {
  const int64_t N = d.C * d.H * d.W, ST = stat_size(d);
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t b = 0; b < d.B; ++b) {
    std::vector<S> v(N), a(N), bb(N), uu(N), scratch(ST > 0 ? ST : 1);
    for (int64_t i = 0; i < N; ++i) v[i] = v0 ? v0[b * N + i] : S(0);
    for (int64_t t = 0; t < d.T; ++t) {
      const int64_t off = (t * d.B + b) * N;
      S* at = a_save ? a_save + off : a.data();
      S* st = stats ? stats + (t * d.B + b) * ST : scratch.data();
      membrane_step(x + off, v.data(), at, bb.data(), uu.data(), st, spikes + off, w0, w1, wsa,
                    d, p);
    }
    for (int64_t i = 0; i < N; ++i) v_last[b * N + i] = v[i];
  }
}

struct Grads {  // outputs of the backward pass (null = not needed)
  void* grad_x;
  void* grad_v0;
  void* grad_w0;   // (hid, C)
  void* grad_w1;   // (C, hid)
  void* grad_wsa;  // (2, k, k)
  double* grad_leak;
  double* grad_gain;
};

template <typename S, int SG>
void backward_t(const S* grad_s, const S* grad_vlast, const S* a_save, const S* stats,
                const S* x, const S* v0, const S* w0, const S* w1, const S* wsa, const Dims& d,
                const Params& p, const Grads& out, int nthreads) {
  const S k = p.has_leak ? S(p.leak) : S(0), vr = S(p.v_rest);
  const S g = p.has_gain ? S(p.gain) : S(1), th = S(p.v_th);
  const S dec = p.has_decay ? S(p.decay) : S(1), vres = p.has_vreset ? S(p.v_reset) : S(0);
  const S sga = S(p.sg_param), one_minus_k = S(1) - k;
  const S dec_f = S(p.decay), vres_f = S(p.v_reset);  // forward values, for V[t-1] recompute
  const int64_t C = d.C, H = d.H, W = d.W, HW = H * W, N = C * HW, hid = d.hid, ks = d.k;
  const int64_t r = ks / 2, ST = stat_size(d), CS = ca_size(d);
  const bool need_k = out.grad_leak != nullptr, need_g = out.grad_gain != nullptr;
  const int64_t nw0 = d.has_ca == 1 ? hid * C : (d.has_ca == 2 ? hid : 0);
  const int64_t nw1 = d.has_ca == 1 ? hid * C : 0, nwsa = d.has_sa ? 2 * ks * ks : 0;
  // per-sample partial sums of the parameter gradients: [B][w0 | w1 | wsa | leak | gain]
  const int64_t np = nw0 + nw1 + nwsa + 2;
  std::vector<double> part(d.B * np, 0.0);
  S* gx_all = static_cast<S*>(out.grad_x);
  S* gv0_all = static_cast<S*>(out.grad_v0);
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t b = 0; b < d.B; ++b) {
    std::vector<S> gv(N), gu(N), gb(N), bb(N), uu(N), vprev(need_k ? N : 1);
    std::vector<S> go(HW), gP(2 * HW), gl(C), gza(hid), gzm(hid), ties(HW), gq(2 * HW),
        wacc(W);
    double* pw0 = part.data() + b * np;
    double* pw1 = pw0 + nw0;
    double* pwsa = pw1 + nw1;
    double* pk = pwsa + nwsa;
    double* pg = pk + 1;
    for (int64_t i = 0; i < N; ++i) gv[i] = grad_vlast[b * N + i];
    for (int64_t t = d.T - 1; t >= 0; --t) {
      const int64_t off = (t * d.B + b) * N;
      const S* at = a_save + off;
      const S* st = stats + (t * d.B + b) * ST;
      gated(at, st, bb.data(), uu.data(), d);
      if (need_k) {  // the post-reset membrane V[t-1] this step leaked from
        if (t > 0) {
          const int64_t offp = ((t - 1) * d.B + b) * N;
          gated(a_save + offp, stats + ((t - 1) * d.B + b) * ST, static_cast<S*>(nullptr),
                vprev.data(), d);
          for (int64_t i = 0; i < N; ++i) {
            const S u = vprev[i];
            vprev[i] = reset(u, spike(u, th, p), th, dec_f, vres_f, p);
          }
        } else {
          for (int64_t i = 0; i < N; ++i) vprev[i] = v0 ? v0[b * N + i] : S(0);
        }
      }
      // fire and reset: dL/dU of the gated membrane
      const S* gst = grad_s + off;
      for (int64_t i = 0; i < N; ++i) {
        const S ui = uu[i];
        const S h = ui - th;
        const S s = spike(ui, th, p);
        const S sg = surrogate_grad_t<S, SG>(h, sga);
        const S gvi = gv[i];
        S gs = gst[i];
        S gui;
        if (p.hard) {
          if (!p.detach) gs = gs + gvi * (vres - dec * ui);
          gui = sg * gs + gvi * dec * (S(1) - s);
        } else {
          if (!p.detach) gs = gs - gvi * dec * th;
          gui = sg * gs + gvi * dec;
        }
        gu[i] = gui;
      }
      // SA backward: U = gs[p] * B
      if (d.has_sa) {
        const S* P = st + CS;
        const S* gsp = P + 2 * HW;
        for (int64_t q = 0; q < HW; ++q) go[q] = S(0);
        for (int64_t c = 0; c < C; ++c)
          for (int64_t q = 0; q < HW; ++q) {
            const int64_t i = c * HW + q;
            go[q] += gu[i] * bb[i];
            gb[i] = gu[i] * gsp[q];
          }
        for (int64_t q = 0; q < HW; ++q) go[q] = go[q] * (gsp[q] * (S(1) - gsp[q]));
        for (int64_t q = 0; q < 2 * HW; ++q) gP[q] = S(0);
        // the k x k conv's weight and input gradients, tap by tap; in-range rows and columns
        // only (no test in the inner loop, which vectorises over x: per-x partial sums of the
        // weight gradient, added up in a fixed order)
        for (int64_t ch = 0; ch < 2; ++ch)
          for (int64_t dy = 0; dy < ks; ++dy)
            for (int64_t dx = 0; dx < ks; ++dx) {
              const S wv = wsa[(ch * ks + dy) * ks + dx];
              const int64_t y0 = r - dy > 0 ? r - dy : 0, y1 = H + r - dy < H ? H + r - dy : H;
              const int64_t x0 = r - dx > 0 ? r - dx : 0, x1 = W + r - dx < W ? W + r - dx : W;
              S* __restrict wa = wacc.data();
              for (int64_t xq = 0; xq < W; ++xq) wa[xq] = S(0);
              for (int64_t y = y0; y < y1; ++y) {
                const S* __restrict gor = go.data() + y * W;
                const S* __restrict pr = P + ch * HW + (y + dy - r) * W + (dx - r);
                S* __restrict gpr = gP.data() + ch * HW + (y + dy - r) * W + (dx - r);
                for (int64_t xq = x0; xq < x1; ++xq) {
                  wa[xq] += gor[xq] * pr[xq];
                  gpr[xq] += gor[xq] * wv;
                }
              }
              S acc = S(0);
              for (int64_t xq = x0; xq < x1; ++xq) acc += wa[xq];
              pwsa[(ch * ks + dy) * ks + dx] += double(acc);
            }
        // the channel pools' gradients: the mean's spread evenly, the max's shared evenly
        // between tied maxima (channel-major loops over HW-long rows, which vectorise)
        const S* pm = P + HW;
        for (int64_t q = 0; q < HW; ++q) ties[q] = S(0);
        for (int64_t c = 0; c < C; ++c) {
          const S* __restrict bc = bb.data() + c * HW;
          for (int64_t q = 0; q < HW; ++q) ties[q] += bc[q] == pm[q] ? S(1) : S(0);
        }
        for (int64_t q = 0; q < HW; ++q) {
          gq[q] = gP[q] / S(C);
          gq[HW + q] = gP[HW + q] / ties[q];
        }
        for (int64_t c = 0; c < C; ++c) {
          const S* __restrict bc = bb.data() + c * HW;
          S* __restrict gbc = gb.data() + c * HW;
          for (int64_t q = 0; q < HW; ++q) {
            const S v = gbc[q] + gq[q];
            gbc[q] = bc[q] == pm[q] ? v + gq[HW + q] : v;
          }
        }
      } else {
        for (int64_t i = 0; i < N; ++i) gb[i] = gu[i];
      }
      // CA backward: B = gc[c] * A; gu is reused for dL/dA
      S* ga = gu.data();
      if (d.has_ca == 3) {  // SimAM backward, per channel
        const S lam = S(d.lam), m = S(HW - 1 > 1 ? HW - 1 : 1);
        for (int64_t c = 0; c < C; ++c) {
          const S mu = st[c], var = st[C + c];
          const S den = S(4) * (var + lam);
          const S* ac = at + c * HW;
          const S* gbc = gb.data() + c * HW;
          S* gac = ga + c * HW;
          // pass 1: dL/dy per element (kept in gac), and dL/d den
          S g_den = S(0);
          for (int64_t q = 0; q < HW; ++q) {
            const S dv = (ac[q] - mu) * (ac[q] - mu);
            const S g = sigmoid(dv / den + S(0.5));
            const S gy = gbc[q] * ac[q] * (g * (S(1) - g));
            g_den = g_den - gy * dv / (den * den);
            gac[q] = gy;
          }
          const S g_var = S(4) * g_den;
          // pass 2: dL/dD = gy / den + g_var / m; dL/dA = gb g + 2 (A - mu) dL/dD + dL/dmu / HW
          S g_mu = S(0);
          for (int64_t q = 0; q < HW; ++q) {
            const S gdv = gac[q] / den + g_var / m;
            const S t2 = S(2) * (ac[q] - mu) * gdv;
            g_mu = g_mu - t2;
            const S g = simam_gate(ac[q], mu, var, lam);
            gac[q] = gbc[q] * g + t2;
          }
          const S gmu = g_mu / S(HW);
          for (int64_t q = 0; q < HW; ++q) gac[q] = gac[q] + gmu;
        }
      } else if (d.has_ca == 2) {  // ECA backward: B = gc[c] * A, gc = sigmoid(conv1d(mean_HW A))
        const S* avg = st;
        const S* gc = st + C;
        const int64_t r1 = hid / 2;
        for (int64_t c = 0; c < C; ++c)
          gl[c] = dot8(gb.data() + c * HW, at + c * HW, HW) * (gc[c] * (S(1) - gc[c]));
        for (int64_t c = 0; c < C; ++c) {  // dL/d avg[c], spread over the HW pixels
          S acc = S(0);
          for (int64_t j = 0; j < hid; ++j) {
            const int64_t co = c - (j - r1);  // output channel that read avg[c] through tap j
            if (co >= 0 && co < C) acc += w0[j] * gl[co];
          }
          const S gavg = acc / S(HW);
          for (int64_t q = 0; q < HW; ++q) {
            const int64_t i = c * HW + q;
            ga[i] = gb[i] * gc[c] + gavg;
          }
        }
        for (int64_t j = 0; j < hid; ++j) {
          S acc = S(0);
          for (int64_t c = 0; c < C; ++c) {
            const int64_t cc = c + j - r1;
            if (cc >= 0 && cc < C) acc += gl[c] * avg[cc];
          }
          pw0[j] += double(acc);
        }
      } else if (d.has_ca == 1) {
        const S* avg = st;
        const S* mx = st + C;
        const S* za = st + 2 * C;
        const S* zm = za + hid;
        const S* gc = zm + hid;
        for (int64_t c = 0; c < C; ++c)
          gl[c] = dot8(gb.data() + c * HW, at + c * HW, HW) * (gc[c] * (S(1) - gc[c]));
        for (int64_t c = 0; c < C; ++c)
          for (int64_t j = 0; j < hid; ++j) {
            const S ra = za[j] > S(0) ? za[j] : S(0), rm = zm[j] > S(0) ? zm[j] : S(0);
            pw1[c * hid + j] += double(gl[c] * ra) + double(gl[c] * rm);
          }
        for (int64_t j = 0; j < hid; ++j) {
          S acc = S(0);
          for (int64_t c = 0; c < C; ++c) acc += w1[c * hid + j] * gl[c];
          gza[j] = za[j] > S(0) ? acc : S(0);
          gzm[j] = zm[j] > S(0) ? acc : S(0);
        }
        for (int64_t j = 0; j < hid; ++j)
          for (int64_t c = 0; c < C; ++c)
            pw0[j * C + c] += double(gza[j] * avg[c]) + double(gzm[j] * mx[c]);
        for (int64_t c = 0; c < C; ++c) {
          S gavg = S(0), gmax = S(0);
          for (int64_t j = 0; j < hid; ++j) {
            gavg += w0[j * C + c] * gza[j];
            gmax += w0[j * C + c] * gzm[j];
          }
          gavg = gavg / S(HW);
          const S m = mx[c];
          int64_t ties = 0;
          for (int64_t q = 0; q < HW; ++q) ties += at[c * HW + q] == m;
          gmax = gmax / S(ties);
          for (int64_t q = 0; q < HW; ++q) {
            const int64_t i = c * HW + q;
            S v = gb[i] * gc[c] + gavg;
            if (at[i] == m) v = v + gmax;
            ga[i] = v;
          }
        }
      } else {
        ga = gb.data();
      }
      // charge backward
      S* gxt = gx_all ? gx_all + off : nullptr;
      const S* xt = x ? x + off : nullptr;
      double sk = 0.0, sgn = 0.0;
      for (int64_t i = 0; i < N; ++i) {
        const S gai = ga[i];
        if (gxt) gxt[i] = g * gai;
        gv[i] = one_minus_k * gai;
        if (need_k) sk += double(gai * (vr - vprev[i]));
        if (need_g) sgn += double(gai * xt[i]);
      }
      *pk += sk;
      *pg += sgn;
    }
    if (gv0_all)
      for (int64_t i = 0; i < N; ++i) gv0_all[b * N + i] = gv[i];
  }
  // fixed-order reduction over the batch
  std::vector<double> tot(np, 0.0);
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t j = 0; j < np; ++j) tot[j] += part[b * np + j];
  if (out.grad_w0)
    for (int64_t j = 0; j < nw0; ++j) static_cast<S*>(out.grad_w0)[j] = S(tot[j]);
  if (out.grad_w1)
    for (int64_t j = 0; j < nw1; ++j) static_cast<S*>(out.grad_w1)[j] = S(tot[nw0 + j]);
  if (out.grad_wsa)
    for (int64_t j = 0; j < nwsa; ++j) static_cast<S*>(out.grad_wsa)[j] = S(tot[nw0 + nw1 + j]);
  if (out.grad_leak) *out.grad_leak = tot[nw0 + nw1 + nwsa];
  if (out.grad_gain) *out.grad_gain = tot[nw0 + nw1 + nwsa + 1];
}

template <typename S>
void backward(const S* gs, const S* gvl, const S* a, const S* st, const S* x, const S* v0,
              const S* w0, const S* w1, const S* wsa, const Dims& d, const Params& p,
              const Grads& out, int nt) {
  with_surrogate(p.surrogate, [&](auto sg) {
    backward_t<S, decltype(sg)::value>(gs, gvl, a, st, x, v0, w0, w1, wsa, d, p, out, nt);
  });
}

}  // namespace

extern "C" {

int64_t masnn_membrane_stat_size(const Dims* d) { return stat_size(*d); }

void masnn_membrane_forward_f32(const float* x, const float* v0, float* spikes, float* a_save,
                                float* stats, float* v_last, const float* w0, const float* w1,
                                const float* wsa, const Dims* d, const Params* p, int nt) {
  forward<float>(x, v0, spikes, a_save, stats, v_last, w0, w1, wsa, *d, *p, nt);
}

void masnn_membrane_forward_f64(const double* x, const double* v0, double* spikes,
                                double* a_save, double* stats, double* v_last, const double* w0,
                                const double* w1, const double* wsa, const Dims* d,
                                const Params* p, int nt) {
  forward<double>(x, v0, spikes, a_save, stats, v_last, w0, w1, wsa, *d, *p, nt);
}

void masnn_membrane_backward_f32(const float* gs, const float* gvl, const float* a,
                                 const float* st, const float* x, const float* v0,
                                 const float* w0, const float* w1, const float* wsa,
                                 const Dims* d, const Params* p, const Grads* out, int nt) {
  backward<float>(gs, gvl, a, st, x, v0, w0, w1, wsa, *d, *p, *out, nt);
}

void masnn_membrane_backward_f64(const double* gs, const double* gvl, const double* a,
                                 const double* st, const double* x, const double* v0,
                                 const double* w0, const double* w1, const double* wsa,
                                 const Dims* d, const Params* p, const Grads* out, int nt) {
  backward<double>(gs, gvl, a, st, x, v0, w0, w1, wsa, *d, *p, *out, nt);
}

}  // extern "C"
