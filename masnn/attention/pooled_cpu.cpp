// Fused pooled attention (TA, and CA / SA pooled over the window: the `code` placement) for
// CPU tensors: the heavy passes over X of the gate chain
//
//   Y1 = a[t,b] * X            (TA: a = sigmoid(MLP_T(avg, max over C, HW)), per (t, b))
//   Y2 = g[b,c] * Y1           (CA: g = sigmoid(MLP_C(avg, max over T, HW)), per (b, c))
//   Y3 = s[b,p] * Y2           (SA: s = sigmoid(conv([avg; max] over T, C))), per (b, h, w))
//   out = relu(Y3)             (optional: the official code's trailing ReLU)
//
// Plain C ABI (no torch headers): masnn/attention/pooled.py compiles this file on first use
// (kernel_build.load_shared), caches the library and calls it through ctypes. The gates
// themselves (the MLPs, the k x k conv, the sigmoids) run in torch on the pooled tensors; this
// file holds only the passes over the (T, B, C, HW) tensor:
//
// forward   plane_stats  per (t, b, c): sum, max (and the count of the max) of X over HW:
//                        TA's pools and CA's pools of Y1 both come from them (a >= 0, and
//                        rounding is monotone, so max(a * X) = a * max(X) exactly)
//           sa_pools     per (t, b, p): sum and max over C of Y2 (SA's pools, reduced over T
//                        in torch)
//           apply        out = relu(((X * a) * g) * s), the reference's products in its order
// backward  grad stage 1 per (t, b, p): sum over C of dY3 * Y2 (-> ds) and the SA max ties
//           grad stage 2 per (t, b, c): sum over HW of dY2 * Y1 (-> dg) and the CA max ties
//           grad stage 3 per (t, b, c): sum over HW of dY1 * X (-> da)
//           grad stage 4 dX
// Every backward stage recomputes Y1, Y2, Y3 and the incoming gradients dY3 -> dY2 -> dY1 from
// X and dOut (no intermediate is stored). A max pool's gradient goes to every element equal to
// the pooled maximum, divided by their count (torch's amax); the counts are recomputed on the
// same products the reference compares. Absent gates are compiled out (template flags).
// Partial sums are per task and reduced in torch in a fixed order: results do not depend on the
// thread count.
#include <cstdint>

namespace {

struct Dims {
  int64_t T, B, C, HW;
  int32_t ta, ca, sa, relu;
};

// The incoming gradients of each gate's pools (computed in torch between the stages):
// max values, mean gradient / N, max gradient / tie count.
template <typename S>
struct Terms {
  const S* mxs;  // (B, HW)
  const S* das;
  const S* rms;
  const S* mxc;  // (B, C)
  const S* dac;
  const S* rmc;
  const S* mxt;  // (T, B)
  const S* dat;
  const S* rmt;
};

// ---- forward -------------------------------------------------------------------------------

template <typename S>
void plane_stats(const S* x, S* sum, S* mx, S* cnt, const Dims& d, int nthreads) {
  const int64_t planes = d.T * d.B * d.C, HW = d.HW;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < planes; ++i) {
    const S* xp = x + i * HW;
    S acc = S(0), m = xp[0];
#pragma omp simd reduction(+ : acc) reduction(max : m)
    for (int64_t p = 0; p < HW; ++p) {
      acc += xp[p];
      m = xp[p] > m ? xp[p] : m;
    }
    sum[i] = acc;
    mx[i] = m;
    if (cnt != nullptr) {
      S k = S(0);
#pragma omp simd reduction(+ : k)
      for (int64_t p = 0; p < HW; ++p) k += xp[p] == m ? S(1) : S(0);
      cnt[i] = k;
    }
  }
}

template <typename S, bool TA, bool CA>
void sa_pools(const S* x, const S* a, const S* g, S* psum, S* pmax, const Dims& d, int nthreads) {
  const int64_t TB = d.T * d.B, B = d.B, C = d.C, HW = d.HW;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t tb = 0; tb < TB; ++tb) {
    const int64_t b = tb % B;
    const S at = TA ? a[tb] : S(1);
    S* ps = psum + tb * HW;
    S* pm = pmax + tb * HW;
    for (int64_t c = 0; c < C; ++c) {
      const S* xp = x + (tb * C + c) * HW;
      const S gc = CA ? g[b * C + c] : S(1);
      if (c == 0) {
        for (int64_t p = 0; p < HW; ++p) {
          S y = TA ? xp[p] * at : xp[p];
          y = CA ? y * gc : y;
          ps[p] = y;
          pm[p] = y;
        }
      } else {
        for (int64_t p = 0; p < HW; ++p) {
          S y = TA ? xp[p] * at : xp[p];
          y = CA ? y * gc : y;
          ps[p] += y;
          pm[p] = y > pm[p] ? y : pm[p];
        }
      }
    }
  }
}

template <typename S, bool TA, bool CA, bool SA, bool RELU>
void apply(const S* x, const S* a, const S* g, const S* s, S* out, const Dims& d, int nthreads) {
  const int64_t planes = d.T * d.B * d.C, B = d.B, C = d.C, HW = d.HW;
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < planes; ++i) {
    const int64_t c = i % C, tb = i / C, b = tb % B;
    const S at = TA ? a[tb] : S(1), gc = CA ? g[b * C + c] : S(1);
    const S* sp = SA ? s + b * HW : nullptr;
    const S* xp = x + i * HW;
    S* op = out + i * HW;
    for (int64_t p = 0; p < HW; ++p) {
      S y = TA ? xp[p] * at : xp[p];
      y = CA ? y * gc : y;
      y = SA ? y * sp[p] : y;
      op[p] = RELU ? (y > S(0) ? y : S(0)) : y;
    }
  }
}

// ---- backward ------------------------------------------------------------------------------

// One element of the chain: the forward values and the gradients down to level `L`
// (3: dY3, 2: dY2, 1: dY1, 0: dX).
template <typename S, bool TA, bool CA, bool SA, bool RELU, int L>
struct Elem {
  S y1, y2, d3, d2, d1, dx;
  inline Elem(S x, S go, S at, S gc, S sp, S mxs, S das, S rms, S mxc, S dac, S rmc, S mxt,
              S dat, S rmt) {
    y1 = TA ? x * at : x;
    y2 = CA ? y1 * gc : y1;
    const S y3 = SA ? y2 * sp : y2;
    d3 = RELU ? (y3 > S(0) ? go : S(0)) : go;
    if (L <= 2) d2 = SA ? d3 * sp + das + (y2 == mxs ? rms : S(0)) : d3;
    if (L <= 1) d1 = CA ? d2 * gc + dac + (y1 == mxc ? rmc : S(0)) : d2;
    if (L <= 0) dx = TA ? d1 * at + dat + (x == mxt ? rmt : S(0)) : d1;
  }
};

template <typename S, bool TA, bool CA, bool SA, bool RELU>
void grad_stage(int stage, const S* x, const S* go, const S* a, const S* g, const S* s,
                const Terms<S>& tm, S* out1, S* out2, const Dims& d, int nthreads) {
  const int64_t TB = d.T * d.B, B = d.B, C = d.C, HW = d.HW, planes = TB * C;
  if (stage == 1) {  // per (t, b): over C, into (HW) rows
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t tb = 0; tb < TB; ++tb) {
      const int64_t b = tb % B;
      const S at = TA ? a[tb] : S(1);
      const S* sp = s + b * HW;
      const S* mxs = tm.mxs + b * HW;
      S* ds = out1 + tb * HW;
      S* cs = out2 + tb * HW;
      for (int64_t p = 0; p < HW; ++p) ds[p] = cs[p] = S(0);
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = tb * C + c;
        const S gc = CA ? g[b * C + c] : S(1);
        const S* xp = x + i * HW;
        const S* gp = go + i * HW;
        for (int64_t p = 0; p < HW; ++p) {
          Elem<S, TA, CA, SA, RELU, 3> e(xp[p], gp[p], at, gc, sp[p], S(0), S(0), S(0), S(0),
                                         S(0), S(0), S(0), S(0), S(0));
          ds[p] += e.d3 * e.y2;
          cs[p] += e.y2 == mxs[p] ? S(1) : S(0);
        }
      }
    }
    return;
  }
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t i = 0; i < planes; ++i) {
    const int64_t c = i % C, tb = i / C, b = tb % B;
    const S at = TA ? a[tb] : S(1), gc = CA ? g[b * C + c] : S(1);
    // a stage reads only the terms already computed: CA's max from stage 2, CA's pool
    // gradients from stage 3, TA's in stage 4
    const bool cg = CA && stage >= 3, tg = TA && stage >= 4;
    const S mxc = CA ? tm.mxc[b * C + c] : S(0), dac = cg ? tm.dac[b * C + c] : S(0);
    const S rmc = cg ? tm.rmc[b * C + c] : S(0);
    const S mxt = tg ? tm.mxt[tb] : S(0), dat = tg ? tm.dat[tb] : S(0);
    const S rmt = tg ? tm.rmt[tb] : S(0);
    const S* one = nullptr;  // placeholder row for an absent SA
    const S* sp = SA ? s + b * HW : one;
    const S* mxs = SA ? tm.mxs + b * HW : one;
    const S* das = SA ? tm.das + b * HW : one;
    const S* rms = SA ? tm.rms + b * HW : one;
    const S* xp = x + i * HW;
    const S* gp = go + i * HW;
    if (stage == 2) {
      S acc = S(0), k = S(0);
#pragma omp simd reduction(+ : acc, k)
      for (int64_t p = 0; p < HW; ++p) {
        Elem<S, TA, CA, SA, RELU, 2> e(xp[p], gp[p], at, gc, SA ? sp[p] : S(1),
                                       SA ? mxs[p] : S(0), SA ? das[p] : S(0),
                                       SA ? rms[p] : S(0), mxc, dac, rmc, mxt, dat, rmt);
        acc += e.d2 * e.y1;
        k += e.y1 == mxc ? S(1) : S(0);
      }
      out1[i] = acc;
      out2[i] = k;
    } else if (stage == 3) {
      S acc = S(0);
#pragma omp simd reduction(+ : acc)
      for (int64_t p = 0; p < HW; ++p) {
        Elem<S, TA, CA, SA, RELU, 1> e(xp[p], gp[p], at, gc, SA ? sp[p] : S(1),
                                       SA ? mxs[p] : S(0), SA ? das[p] : S(0),
                                       SA ? rms[p] : S(0), mxc, dac, rmc, mxt, dat, rmt);
        acc += e.d1 * xp[p];
      }
      out1[i] = acc;
    } else {
      S* dxp = out1 + i * HW;
      for (int64_t p = 0; p < HW; ++p) {
        Elem<S, TA, CA, SA, RELU, 0> e(xp[p], gp[p], at, gc, SA ? sp[p] : S(1),
                                       SA ? mxs[p] : S(0), SA ? das[p] : S(0),
                                       SA ? rms[p] : S(0), mxc, dac, rmc, mxt, dat, rmt);
        dxp[p] = e.dx;
      }
    }
  }
}

// ---- runtime flags -> template instance ----------------------------------------------------

template <typename S>
struct Call {
  const S *x, *go, *a, *g, *s;
  S *out, *out1, *out2;
  const Terms<S>* tm;
  int stage;  // 0: apply, 1-4: grad stages, 5: sa_pools
  const Dims* d;
  int nthreads;

  template <bool TA, bool CA, bool SA, bool RELU>
  void run() const {
    if (stage == 0) {
      apply<S, TA, CA, SA, RELU>(x, a, g, s, out, *d, nthreads);
    } else if (stage == 5) {
      sa_pools<S, TA, CA>(x, a, g, out1, out2, *d, nthreads);
    } else {
      grad_stage<S, TA, CA, SA, RELU>(stage, x, go, a, g, s, *tm, out1, out2, *d, nthreads);
    }
  }
  template <bool TA, bool CA, bool SA>
  void r3() const {
    if (d->relu) run<TA, CA, SA, true>(); else run<TA, CA, SA, false>();
  }
  template <bool TA, bool CA>
  void r2() const {
    if (d->sa) r3<TA, CA, true>(); else r3<TA, CA, false>();
  }
  template <bool TA>
  void r1() const {
    if (d->ca) r2<TA, true>(); else r2<TA, false>();
  }
  void go_() const {
    if (d->ta) r1<true>(); else r1<false>();
  }
};

template <typename S>
void dispatch(int stage, const S* x, const S* go, const S* a, const S* g, const S* s,
              const Terms<S>* tm, S* out, S* out1, S* out2, const Dims* d, int nthreads) {
  Call<S> c{x, go, a, g, s, out, out1, out2, tm, stage, d, nthreads};
  c.go_();
}

}  // namespace

extern "C" {

void masnn_pooled_stats_f32(const float* x, float* sum, float* mx, float* cnt, const Dims* d,
                            int nthreads) {
  plane_stats<float>(x, sum, mx, cnt, *d, nthreads);
}
void masnn_pooled_stats_f64(const double* x, double* sum, double* mx, double* cnt,
                            const Dims* d, int nthreads) {
  plane_stats<double>(x, sum, mx, cnt, *d, nthreads);
}
// stage 0: out = apply(x); 5: (out1, out2) = SA pools; 1-4: the backward stages (header)
void masnn_pooled_pass_f32(int stage, const float* x, const float* go, const float* a,
                           const float* g, const float* s, const Terms<float>* tm, float* out,
                           float* out1, float* out2, const Dims* d, int nthreads) {
  dispatch<float>(stage, x, go, a, g, s, tm, out, out1, out2, d, nthreads);
}
void masnn_pooled_pass_f64(int stage, const double* x, const double* go, const double* a,
                           const double* g, const double* s, const Terms<double>* tm,
                           double* out, double* out1, double* out2, const Dims* d,
                           int nthreads) {
  dispatch<double>(stage, x, go, a, g, s, tm, out, out1, out2, d, nthreads);
}

}  // extern "C"
