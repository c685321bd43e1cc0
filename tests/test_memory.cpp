// Step memory (backend/cpu/arena.hpp, backend/step_memory.hpp): the Cpu arena's reuse, limits and ownership, and
// that training steps of the common models take no new tensor memory after warm-up (the arena's own count; the
// malloc-level count of the same steps is tests/alloc/test_alloc_count.cpp).
#include <thread>

#include "helpers.hpp"

using namespace tests;
using F = biflow::Cpu<float>;

TEST_CASE("a Cpu arena hands a freed buffer of the same size out again, and counts reuses and allocations") {
  cpu::Arena arena;
  const float* first = nullptr;
  {
    const cpu::ArenaScope scope(arena);
    {
      Tensor<F> a(64, 32, uninit);
      first = a.data();
      CHECK(arena.stats().allocated == 1);
      CHECK(arena.stats().live_bytes == 64 * 32 * sizeof(float));
    }
    CHECK(arena.stats().held_bytes == 64 * 32 * sizeof(float));
    Tensor<F> b(32, 64);  // same byte size, other shape: the same buffer, zero-filled
    CHECK(b.data() == first);
    CHECK(b.rows() == 32);
    CHECK(b.cols() == 64);
    CHECK(to_host(b).cwiseAbs().maxCoeff() == 0.0f);
    CHECK(arena.stats().reused == 1);
    Tensor<F> c(3, 5);  // a new size: a new buffer
    CHECK(c.data() != first);
    CHECK(arena.stats().allocated == 2);
  }
  // Outside the scope tensors come from the heap and the arena's counts do not move.
  const Tensor<F> d(64, 32);
  CHECK(arena.stats().allocated == 2);
  CHECK(arena.stats().reused == 1);
}

TEST_CASE("pooled tensors copy, move, reshape, view and assign like heap tensors") {
  cpu::Arena arena;
  const cpu::ArenaScope scope(arena);
  Tensor<F> a = randn<F>(6, 4, 1);  // made inside the scope: pooled
  const HostMatrix<float> ha = to_host(a);
  Tensor<F> b = a;  // deep copy
  CHECK(b.data() != a.data());
  CHECK((to_host(b) - ha).cwiseAbs().maxCoeff() == 0.0f);
  const float* pa = a.data();
  Tensor<F> c = std::move(a);  // move takes the buffer
  CHECK(c.data() == pa);
  c.reshape(4, 6);
  CHECK(c.rows() == 4);
  CHECK(to_host(c)(1, 0) == ha(1, 2));  // row-major: element 6 is (1, 2) of the 6x4 original
  Tensor<F> same(24, 1);
  same = c;  // same element count, another shape: the shape follows, the buffer stays
  CHECK(same.rows() == 4);
  CHECK(same.cols() == 6);
  CHECK((to_host(same) - to_host(c)).cwiseAbs().maxCoeff() == 0.0f);
  Tensor<F> heap(2, 2);
  heap = c;  // a heap tensor assigned a pooled one (and back) keeps values and shape
  CHECK(heap.rows() == 4);
  CHECK((to_host(heap) - to_host(c)).cwiseAbs().maxCoeff() == 0.0f);
  heap = Tensor<F>(HostMatrix<float>::Constant(3, 3, 2.0f));
  c = std::move(heap);
  CHECK(c.rows() == 3);
  CHECK(to_host(c)(2, 2) == 2.0f);
  auto storage = std::make_shared<Tensor<F>>(2, 8);
  Tensor<F> view;
  view.bind_view(storage, 4, 2, 2);
  view = randn<F>(2, 2, 5);  // writes through into the storage
  CHECK(storage->data()[4] == view.data()[0]);
  CHECK(view.data() == storage->data() + 4);
}

TEST_CASE("a pooled tensor outlives its arena and its scope (the buffer is freed, not returned to a dead pool)") {
  Tensor<F> kept;
  {
    cpu::Arena arena;
    const cpu::ArenaScope scope(arena);
    kept = randn<F>(16, 16, 2);
  }
  CHECK(kept.rows() == 16);
  CHECK(std::isfinite(double(sum(kept))));
}

TEST_CASE("arena scopes nest and end per thread: another thread's tensors never come from this arena") {
  cpu::Arena outer, inner;
  const cpu::ArenaScope s1(outer);
  { Tensor<F> a(10, 10); }
  {
    const cpu::ArenaScope s2(inner);
    Tensor<F> b(10, 10);
    std::thread([] { Tensor<F> c(10, 10); }).join();
  }
  { Tensor<F> d(10, 10); }  // back to the outer arena: a reuse there
  CHECK(outer.stats().allocated == 1);
  CHECK(outer.stats().reused == 1);
  CHECK(inner.stats().allocated == 1);
  CHECK(inner.stats().reused == 0);
}

TEST_CASE("an arena holds at most its limit of freed buffers and gives the rest back to the heap") {
  cpu::Arena arena;
  arena.set_limit(1024);
  {
    const cpu::ArenaScope scope(arena);
    Tensor<F> a(16, 16), b(16, 16);  // 1 KiB each
  }
  CHECK(arena.stats().held_bytes == 1024);
  CHECK(arena.stats().released == 1);
  arena.trim();
  CHECK(arena.stats().held_bytes == 0);
}

namespace {
/// Steps `trainer` `warm` times, then `steps` more; returns the arena's (allocated, reused) growth over the latter.
template <class Trainer, class Step>
std::pair<long long, long long> steady_state(Trainer& t, Step&& step, int warm = 3, int steps = 5) {
  for (int i = 0; i < warm; ++i) step();
  const cpu::Arena::Stats s0 = t.optimization().step_memory().arena().stats();
  for (int i = 0; i < steps; ++i) step();
  const cpu::Arena::Stats s1 = t.optimization().step_memory().arena().stats();
  MESSAGE("arena after warm-up: ", s1.allocated, " buffers allocated in all, ", s1.reused - s0.reused,
          " reuses in ", steps, " steps, ", s1.held_bytes / 1024, " KiB held, ", s1.live_bytes / 1024, " KiB live");
  return {s1.allocated - s0.allocated, s1.reused - s0.reused};
}
}  // namespace

TEST_CASE("after warm-up a training step takes no new tensor memory: RealNVP, MAF and TARFlow") {
  Rng r(1);
  const Tensor<F> x = from_host<F>(data::toy("moons", 256, r).cast<float>());
  TrainOptions o;
  o.verbose = false;
  o.ema_decay = 0.99;
  SUBCASE("RealNVP") {
    Rng w(2);
    Repeat<dynamic, AffineCoupling<F>> flow(4, [&](std::size_t i) {
      return make_coupling<F>(masks::half(2, int(i % 2)), {32, 32}, w);
    });
    MleTrainer t(flow, o);
    const auto [allocated, reused] = steady_state(t, [&] { t.step(x); });
    CHECK(allocated == 0);
    CHECK(reused > 0);
  }
  SUBCASE("MAF") {
    Rng w(3);
    Repeat<dynamic, Sequential<MaskedAutoregressive<F>, Permutation<F>>> flow(4, [&](std::size_t) {
      return Sequential<MaskedAutoregressive<F>, Permutation<F>>(MaskedAutoregressive<F>(2, {32, 32}, w),
                                                                  Permutation<F>::reverse(2));
    });
    MleTrainer t(flow, o);
    const auto [allocated, reused] = steady_state(t, [&] { t.step(x); });
    CHECK(allocated == 0);
    CHECK(reused > 0);
  }
  SUBCASE("TARFlow") {
    TarFlowConfig cfg;
    cfg.image = {1, 4, 4, 2, PatchOrder::channel_major};
    cfg.width = 16;
    cfg.blocks = 2;
    cfg.layers = 1;
    cfg.heads = 2;
    Rng w(4);
    TarFlow<F> flow(cfg, w);
    MleTrainer t(flow, o);
    const Tensor<F> img = randn<F>(8, 16, 5);
    const auto [allocated, reused] = steady_state(t, [&] { t.step(img); });
    CHECK(allocated == 0);
    CHECK(reused > 0);
  }
}
