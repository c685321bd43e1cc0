#pragma once
// Elementwise functors shared by all layers. They are plain structs with host+device call operators so
// the same math runs in Cpu loops and Cuda kernels (backends apply them with map / for_each).
#include <cmath>

#include "../core/config.hpp"
#include "../core/fast_math.hpp"

namespace biflow::fn {

struct Add {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b) const { return a + b; }
};
struct Sub {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b) const { return a - b; }
};
struct Mul {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b) const { return a * b; }
};
struct Neg {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a) const { return -a; }
};
struct Copy {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a) const { return a; }
};
struct Exp {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a) const { return fastmath::vexp(a); }
};
struct Square {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a) const { return a * a; }
};
/// a * s
struct Scale {
  double s;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a) const { return a * T(s); }
};
/// a * alpha + b * beta
struct Axpby {
  double alpha, beta;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b) const { return T(alpha) * a + T(beta) * b; }
};
/// a + b * c
struct AddMul {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b, T c) const { return a + b * c; }
};
/// 1 - a (mask complement)
struct OneMinus {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a) const { return T(1) - a; }
};
/// Slope of the soft clamp c·tanh(a/c) given its output s: 1 − (s/c)²; 1 when the clamp is off (c <= 0).
/// The one place this derivative is written (couplings, MAF and TARFlow blocks use it).
template <class T>
BIFLOW_HOST_DEVICE inline T soft_clamp_slope(T s, double c) {
  if (c <= 0) return T(1);
  const T u = s / T(c);
  return T(1) - u * u;
}
/// Soft clamp c·tanh(a / c) (c <= 0 disables it), optionally times a mask m.
struct SoftClamp {
  double c;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a) const { return c > 0 ? T(c) * std::tanh(a / T(c)) : a; }
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T m) const { return (*this)(a) * m; }
};
/// Derivative of SoftClamp given its output s, times upstream g.
struct SoftClampGrad {
  double c;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T g, T s) const { return g * soft_clamp_slope(s, c); }
};
/// The affine autoregressive transform of MAF and TARFlow blocks, one argument order for both:
/// z = (x − μ)·exp(−α), x = z·exp(α) + μ, log-det −Σα.
struct AffineArForward {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x, T mu, T a) const { return (x - mu) * fastmath::vexp(-a); }
};
struct AffineArInverse {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T z, T mu, T a) const { return z * fastmath::vexp(a) + mu; }
};
/// ∂loss/∂α_raw for that transform with α = SoftClamp{c}(α_raw): (−dz·z − dlogdet)·slope(α).
struct AffineArDAlpha {
  double c;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T dz, T z, T dl, T a) const { return (-dz * z - dl) * soft_clamp_slope(a, c); }
};
struct MulExp {  // a*exp(s)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T s) const { return a * fastmath::vexp(s); }
};
/// a + b*c + d
struct AddMulAdd {
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T a, T b, T c, T d) const { return a + b * c + d; }
};
struct MulExpNeg {  // g * exp(-a)
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T g, T a) const { return g * fastmath::vexp(-a); }
};

/// (x - m)^2 * s (variances: ActNorm, Standardize)
struct SqDiffScaled {
  double s;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T x, T m) const { return (x - m) * (x - m) * T(s); }
};

/// Classifier-free guidance: cond + w·(cond − uncond).
struct Guide {
  double w;
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T c, T u) const { return c + T(w) * (c - u); }
};

}  // namespace biflow::fn
