// EXPECT: reverse strategy: missing `void check(const ReverseConfig&) const`
// A strategy of one's own that forgot check(): rejected with the member it needs, not deep inside the trainer.
#include <biflow/flow/permutation.hpp>
#include <biflow/flow/sequential.hpp>
#include <biflow/reverse/trainer.hpp>
using B = biflow::Cpu<float>;
struct MyStrategy {
  std::string name() const { return "mine"; }
  template <biflow::Backend Bk, class Dist>
  double hidden_loss(const biflow::ReverseConfig&, const std::vector<biflow::Tensor<Bk>>&,
                     const std::vector<biflow::Tensor<Bk>>&, const Dist&, const std::vector<double>&,
                     std::vector<biflow::Tensor<Bk>>& dh, std::vector<double>* = nullptr) {
    dh.clear();
    return 0;
  }
  template <class V>
  void visit_parameters(V&&, const std::string&) {}
};
using G = biflow::ReverseModel<B, biflow::TransformerStage>;
int main() { return sizeof(biflow::ReverseTrainer<biflow::Sequential<biflow::Permutation<B>>, G, MyStrategy>) > 0 ? 0 : 1; }
