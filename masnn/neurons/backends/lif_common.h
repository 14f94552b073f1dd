// The LIF step shared by the fused CPU kernels (lif_cpu.cpp, membrane_cpu.cpp): parameters,
// charge, fire, reset and the surrogate gradients, operation by operation as the reference
// masnn.neurons.functional (same order; the build uses -ffp-contract=off).
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace masnn_lif {

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
  int32_t smooth;     // tests only (membrane kernel): spikes are the surrogate's primitive
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

template <typename S, int SG>
inline S surrogate_grad_t(S h, S a) {
  if (SG == 0) return (std::fabs(h) < a / S(2)) ? S(1) / a : S(0);  // rect: (|h| < w/2) / w
  if (SG == 1) {                                                    // sigmoid: a s (1 - s)
    S s = S(1) / (S(1) + std::exp(-(a * h)));
    return a * s * (S(1) - s);
  }
  S z = S(M_PI / 2) * a * h;  // atan: (a/2) / (1 + (pi/2 a h)^2)
  return (a / S(2)) / (S(1) + z * z);
}

// The surrogate's smooth primitive g(h) (surrogate.py): a differentiable stand-in for the step,
// used only by the float64 gradcheck of the fused membrane kernel (Params.smooth).
template <typename S>
inline S primitive(S h, int sg, S a) {
  if (sg == 0) {  // rect: clamp(h / w + 1/2, 0, 1)
    S y = h / a + S(0.5);
    return y < S(0) ? S(0) : (y > S(1) ? S(1) : y);
  }
  if (sg == 1) return S(1) / (S(1) + std::exp(-(a * h)));
  return std::atan(S(M_PI / 2) * a * h) / S(M_PI) + S(0.5);
}

// Call f with the surrogate id as a compile-time constant (std::integral_constant<int, id>), so
// each kernel instantiates its backward once per surrogate: 0 rect, 1 sigmoid, else 2 atan.
template <typename F>
inline void with_surrogate(int32_t id, F&& f) {
  if (id == 0)
    f(std::integral_constant<int, 0>{});
  else if (id == 1)
    f(std::integral_constant<int, 1>{});
  else
    f(std::integral_constant<int, 2>{});
}

}  // namespace masnn_lif
