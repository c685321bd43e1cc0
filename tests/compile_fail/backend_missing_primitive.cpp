// EXPECT: check_backend<B>: missing primitive softmax_rows(Tensor<B>& s, bool causal)
// A user backend with a tensor type but no primitives yet: rejected where the first parameter is built on it, with a
// sentence per missing primitive (softmax among them), and not deep inside attention.
#include <biflow/nn/linear.hpp>
namespace mine {
struct Half {
  using scalar = float;
  static constexpr const char* name = "Half";
};
}  // namespace mine
namespace biflow {
template <>
struct backend_traits<mine::Half> {
  static constexpr bool declared = true;
};
template <>
class Tensor<mine::Half> {
 public:
  Tensor() = default;
  Tensor(long, long) {}
  Tensor(long, long, uninit_t) {}
  long rows() const { return 0; }
  long cols() const { return 0; }
  long size() const { return 0; }
  bool empty() const { return true; }
  void reshape(long, long) {}
};
}  // namespace biflow
biflow::Parameter<mine::Half> p;
int main() {}
