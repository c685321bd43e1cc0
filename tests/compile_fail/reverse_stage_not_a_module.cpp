// A reverse-model stage must be an nn Module; a flow layer is not one.
// EXPECT: ReverseModel: a stage must be an nn Module
#include <biflow/reverse/reverse_model.hpp>
#include <biflow/flow/permutation.hpp>

template <class B>
using NotAStage = biflow::Permutation<B>;

int main() {
  biflow::Rng rng(0);
  biflow::ReverseModel<biflow::Cpu<float>, NotAStage> g(biflow::ReverseConfig{}, rng);
  (void)g;
}
