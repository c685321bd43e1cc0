#pragma once
// AnyDistance<B>: a distance chosen at run time (a command-line flag, a config file). The library's distances are
// compile-time policies that compose as types (Sum<Mse, Feature<Net, Mse>>, Adaptive<…>); this holds any one of
// them behind one type, and is itself a distance (so Adaptive<AnyDistance<B>> and Sum<…, AnyDistance<B>> work).
// One virtual call per batch, not per element.
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "distance.hpp"

namespace biflow {

template <Backend B>
class AnyDistance {
 public:
  AnyDistance() = default;
  template <class D>
    requires(!std::is_same_v<std::decay_t<D>, AnyDistance>)
  AnyDistance(D d) : impl_(std::make_shared<const Model<std::decay_t<D>>>(std::move(d))) {  // NOLINT: implicit
    static_assert(Distance<std::decay_t<D>, B>,
                  "AnyDistance<B>: the wrapped type is not a distance on B: it needs `Tensor<B> per_row(pred, "
                  "target) const`, `Tensor<B> grad(pred, target, w) const` and `std::string name() const`");
  }
  bool empty() const { return !impl_; }
  std::string name() const { return get().name(); }
  Tensor<B> per_row(const Tensor<B>& a, const Tensor<B>& b) const { return get().per_row(a, b); }
  Tensor<B> grad(const Tensor<B>& a, const Tensor<B>& b, const Tensor<B>& w) const { return get().grad(a, b, w); }

 private:
  struct Concept {
    virtual ~Concept() = default;
    virtual std::string name() const = 0;
    virtual Tensor<B> per_row(const Tensor<B>& a, const Tensor<B>& b) const = 0;
    virtual Tensor<B> grad(const Tensor<B>& a, const Tensor<B>& b, const Tensor<B>& w) const = 0;
  };
  template <class D>
  struct Model final : Concept {
    explicit Model(D d) : d(std::move(d)) {}
    std::string name() const override { return d.name(); }
    Tensor<B> per_row(const Tensor<B>& a, const Tensor<B>& b) const override { return d.per_row(a, b); }
    Tensor<B> grad(const Tensor<B>& a, const Tensor<B>& b, const Tensor<B>& w) const override {
      return d.grad(a, b, w);
    }
    D d;
  };
  const Concept& get() const {
    if (!impl_) throw usage_error("AnyDistance: no distance was assigned (a default-constructed AnyDistance)");
    return *impl_;
  }
  std::shared_ptr<const Concept> impl_;  // immutable, so copies may share it
};

}  // namespace biflow
