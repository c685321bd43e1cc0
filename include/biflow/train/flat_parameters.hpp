#pragma once
// One flat buffer for a model's parameters and one for their gradients. Each Parameter's value and grad become
// views into them (names, shapes and every layer's code unchanged), so the optimiser step (AdamW, gradient norm,
// clipping, EMA) is a few passes over two long vectors instead of a few kernels per parameter tensor — on a GPU
// ~240 AdamW launches per step of an 8x2 TARFlow become one — and a data-parallel all-reduce has one buffer to
// reduce.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../nn/parameter.hpp"

namespace biflow {

/// Backends whose tensors can be views of another tensor's buffer (Cpu, Cuda). Others keep the per-tensor path.
template <class B>
concept ViewableTensors = requires(Tensor<B>& t, std::shared_ptr<Tensor<B>> s, long i) {
  t.bind_view(s, i, i, i);
  { t.is_view() } -> std::convertible_to<bool>;
};

/// Binds `t` as a rows x cols view of `storage` at `offset` (in place: returning a view by value would copy it).
template <class B>
void bind_view(Tensor<B>& t, const std::shared_ptr<Tensor<B>>& storage, long offset, long rows, long cols) {
  t.bind_view(storage, offset, rows, cols);
}

/// Needs ViewableTensors<B> (checked where it is constructed, so that other backends can still name the type).
template <Backend B>
class FlatParameters {
  static_assert(ViewableTensors<B>, "biflow::FlatParameters<B>: this backend's tensors cannot be views "
                                    "(Tensor<B>::bind_view / is_view); use the per-tensor optimiser path");
 public:
  struct Entry {
    std::string name;
    long offset = 0, rows = 0, cols = 0;
    long size() const { return rows * cols; }
  };

  /// Copies every parameter of `model` (value and grad), in visiting order, into the flat buffers and makes the
  /// parameters' tensors views of them.
  template <HasParameters M>
  explicit FlatParameters(M& model) {
    long n = 0;
    model.visit_parameters([&](const std::string& name, Parameter<B>& p) {
      if (p.grad.rows() != p.value.rows() || p.grad.cols() != p.value.cols())
        throw shape_error(detail::cat("FlatParameters: parameter '", name, "' is ", p.value.rows(), "x",
                                      p.value.cols(), " but its gradient is ", p.grad.rows(), "x", p.grad.cols()));
      entries_.push_back({name, n, p.value.rows(), p.value.cols()});
      n += p.value.size();
    }, "");
    values_ = std::make_shared<Tensor<B>>(1, n, uninit);
    grads_ = std::make_shared<Tensor<B>>(1, n, uninit);
    std::size_t i = 0;
    model.visit_parameters([&](const std::string&, Parameter<B>& p) {
      const Entry& e = entries_[i++];
      if (e.size() > 0) {
        copy_block(p.value, 0, e.size(), *values_, e.offset, n, 1, e.size());
        copy_block(p.grad, 0, e.size(), *grads_, e.offset, n, 1, e.size());
      }
      bind_view(p.value, values_, e.offset, e.rows, e.cols);
      bind_view(p.grad, grads_, e.offset, e.rows, e.cols);
    }, "");
  }
  FlatParameters(const FlatParameters&) = delete;
  FlatParameters& operator=(const FlatParameters&) = delete;

  /// Whether `model`'s parameters are still these views (same names, shapes and buffers).
  template <HasParameters M>
  bool bound_to(M& model) const {
    std::size_t i = 0;
    bool ok = true;
    model.visit_parameters([&](const std::string& name, Parameter<B>& p) {
      if (!ok) return;
      if (i >= entries_.size()) {
        ok = false;
        return;
      }
      const Entry& e = entries_[i++];
      ok = e.name == name && p.value.is_view() && p.grad.is_view() && p.value.data() == values_->data() + e.offset &&
           p.grad.data() == grads_->data() + e.offset && p.value.rows() == e.rows && p.value.cols() == e.cols;
    }, "");
    return ok && i == entries_.size();
  }

  long size() const { return values_->size(); }
  const std::vector<Entry>& entries() const { return entries_; }
  Tensor<B>& values() { return *values_; }
  Tensor<B>& grads() { return *grads_; }
  const std::shared_ptr<Tensor<B>>& values_storage() const { return values_; }
  const std::shared_ptr<Tensor<B>>& grads_storage() const { return grads_; }

  /// Maximal runs [offset, offset + length) of consecutive parameters for which keep(i) holds (AdamW skips frozen
  /// parameters: usually one run covering everything).
  template <class Keep>
  std::vector<std::pair<long, long>> runs(Keep&& keep) const {
    std::vector<std::pair<long, long>> r;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      if (!keep(i) || entries_[i].size() == 0) continue;
      if (!r.empty() && r.back().first + r.back().second == entries_[i].offset) r.back().second += entries_[i].size();
      else r.emplace_back(entries_[i].offset, entries_[i].size());
    }
    return r;
  }

 private:
  std::vector<Entry> entries_;
  std::shared_ptr<Tensor<B>> values_, grads_;
};

}  // namespace biflow
