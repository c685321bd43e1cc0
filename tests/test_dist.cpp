// Data-parallel training in one process (dist/communicator.hpp, dist/data_parallel.hpp, dist/launch.hpp,
// nn/gradient_ready.hpp): the SingleProcess
// communicator, shards of the global batch, AnyCommunicator's dispatch, and the gradient reducer's place in the
// optimiser step, seen through a scripted two-rank communicator whose "peer" is simulated. The real multi-process
// cases (MPI, 2 ranks) are in tests/mpi/test_mpi.cpp.
#include <map>

#include "helpers.hpp"

using namespace tests;

namespace {
using D = Cpu<double>;

/// Rank 0 of 2 with a simulated peer: a reduction combines the local values with peer(i, local); broadcasts from
/// rank 0 keep the data, from rank 1 write peer values. Counts the calls.
struct ScriptedPair {
  std::function<double(long, double)> peer = [](long, double v) { return v; };
  long reductions = 0, broadcasts = 0, barriers = 0, last_count = 0;
  int rank() const { return 0; }
  int size() const { return 2; }
  template <class T>
  void all_reduce(T* p, long n, dist::Reduce op) {
    ++reductions;
    last_count = n;
    for (long i = 0; i < n; ++i) {
      const double s = double(p[i]) + peer(i, double(p[i]));
      p[i] = T(op == dist::Reduce::mean ? s / 2 : s);
    }
  }
  template <class T>
  void broadcast(T* p, long n, int root) {
    ++broadcasts;
    if (root == 1)
      for (long i = 0; i < n; ++i) p[i] = T(peer(i, double(p[i])));
  }
  void barrier() { ++barriers; }
};
static_assert(dist::Communicator<ScriptedPair>);

template <class L>
HostMatrix<double> flat_values(L& l) {
  std::vector<double> g;
  l.visit_parameters([&](const std::string&, auto& p) {
    const HostMatrix<double> m = to_host(p.value).template cast<double>();
    g.insert(g.end(), m.data(), m.data() + m.size());
  }, "");
  return Eigen::Map<HostMatrix<double>>(g.data(), long(g.size()), 1);
}
}  // namespace

TEST_CASE("SingleProcess: rank 0 of 1, collectives are the identity, a broadcast from another root is an error") {
  dist::SingleProcess c;
  CHECK(c.rank() == 0);
  CHECK(c.size() == 1);
  std::vector<double> v{1.5, -2.0};
  c.all_reduce(v.data(), 2, dist::Reduce::sum);
  c.all_reduce(v.data(), 2, dist::Reduce::mean);
  c.broadcast(v.data(), 2, 0);
  CHECK(v == std::vector<double>{1.5, -2.0});
  CHECK(message<usage_error>([&] { c.broadcast(v.data(), 2, 1); }).find("root must be 0") != std::string::npos);
  Tensor<D> t = randn<D>(3, 2, 1);
  const HostMatrix<double> before = to_host(t);
  dist::all_reduce(c, t, dist::Reduce::mean);
  CHECK(to_host(t) == before);
}

TEST_CASE("dist::shard: equal contiguous shards of the global batch; an uneven split or a missing rank is an error") {
  const dist::Shard a = dist::shard(256, 0, 2), b = dist::shard(256, 1, 2);
  CHECK(a.begin == 0);
  CHECK(a.end == 128);
  CHECK(b.begin == 128);
  CHECK(b.end == 256);
  CHECK(dist::shard(7, 0, 1).size() == 7);
  const std::string uneven = message<usage_error>([] { dist::shard(255, 0, 2); });
  CHECK(uneven.find("global batch (255 rows) must split into 2 equal shards") != std::string::npos);
  CHECK(message<usage_error>([] { dist::shard(256, 2, 2); }).find("rank 2 of 2") != std::string::npos);
  CHECK_THROWS_AS(dist::shard(1, 0, 2), usage_error);
}

TEST_CASE("AnyCommunicator forwards every collective to the communicator it wraps") {
  ScriptedPair s;
  s.peer = [](long, double) { return 10.0; };
  dist::AnyCommunicator any(s);
  CHECK(any.size() == 2);
  float f[2] = {1, 2};
  any.all_reduce(f, 2, dist::Reduce::sum);
  CHECK(f[0] == 11.0f);
  double d[1] = {4};
  any.all_reduce(d, 1, dist::Reduce::mean);
  CHECK(d[0] == 7.0);
  any.broadcast(d, 1, 1);
  CHECK(d[0] == 10.0);
  any.barrier();
  CHECK(s.reductions == 2);
  CHECK(s.broadcasts == 1);
  CHECK(s.barriers == 1);
  CHECK_FALSE(any.takes_device_pointers());
  CHECK_FALSE(dist::comm_detail::passes_device_pointers(s));
}

namespace {
struct DevicePair : ScriptedPair {
  static constexpr bool device_pointers = true;
};
}  // namespace

TEST_CASE("AnyCommunicator keeps the device-pointer promise of what it wraps (NCCL's tensors go through unstaged)") {
  DevicePair d;
  dist::AnyCommunicator any(d);
  CHECK(any.takes_device_pointers());
  CHECK(dist::comm_detail::passes_device_pointers(any));
  CHECK(dist::comm_detail::passes_device_pointers(d));
}

TEST_CASE("data parallel: the reducer averages the flat gradients and the loss before clipping, once per step; "
          "with a peer holding the same gradients training is unchanged") {
  Rng r(3);
  auto make = [&] {
    Rng rr(7);
    return Sequential<AffineCoupling<D, MLP<D>>, AffineCoupling<D, MLP<D>>>(
        make_coupling<D>(masks::half(2, 0), {8}, rr), make_coupling<D>(masks::half(2, 1), {8}, rr));
  };
  auto plain = make(), dp = make();
  TrainOptions o;
  o.total_steps = 20;
  o.warmup = 2;
  MleTrainer tp(plain, o), td(dp, o);
  ScriptedPair peer;  // the peer's gradients equal ours: the mean is our own gradient
  const auto stats = dist::make_data_parallel(td, dp, peer);
  CHECK(td.optimization().reduces_gradients());
  CHECK(peer.broadcasts >= 1);  // the initial state broadcast
  const Tensor<D> x = randn<D>(32, 2, 5);
  for (int s = 0; s < 5; ++s) {
    const double lp = tp.step(x).loss, ld = td.step(x).loss;
    CHECK(lp == ld);
  }
  CHECK(peer.reductions == 10);  // per step: the flat gradient buffer, then the loss
  CHECK(flat_values(plain) == flat_values(dp));
  CHECK(stats->calls == 5);  // the reducer's running cost
  CHECK(stats->values == 5 * (parameter_count(dp) + 1));
  CHECK(stats->seconds >= 0);

  // A peer whose gradients and loss are 0: the reported loss is half ours (the mean of the two ranks), and the loss
  // is reduced after the gradients, alone.
  ScriptedPair zero;
  zero.peer = [](long, double) { return 0.0; };
  auto dq = make();
  MleTrainer tq(dq, o);
  dist::reduce_gradients(tq.optimization(), zero);
  const double local = nll(dq, x);
  CHECK(tq.step(x).loss == doctest::Approx(local / 2).epsilon(1e-12));
  CHECK(zero.last_count == 1);
  CHECK(zero.reductions == 2);
}

namespace {
/// The root's side of broadcasts: records every payload.
struct Recorder {
  std::vector<std::vector<double>> sent;
  int rank() const { return 0; }
  int size() const { return 2; }
  template <class T>
  void all_reduce(T*, long, dist::Reduce) {}
  template <class T>
  void broadcast(T* p, long n, int) {
    sent.emplace_back(p, p + n);
  }
  void barrier() {}
};
/// Rank 1's side: receives the recorded payloads in order.
struct Replayer {
  const std::vector<std::vector<double>>& sent;
  std::size_t next = 0;
  int rank() const { return 1; }
  int size() const { return 2; }
  template <class T>
  void all_reduce(T*, long, dist::Reduce) {}
  template <class T>
  void broadcast(T* p, long n, int) {
    REQUIRE(next < sent.size());
    REQUIRE(long(sent[next].size()) == n);
    for (long i = 0; i < n; ++i) p[i] = T(sent[next][std::size_t(i)]);
    ++next;
  }
  void barrier() {}
};
}  // namespace

TEST_CASE("data parallel: broadcast_state gives every rank the root's parameters and buffers") {
  Rng r1(1), r2(2);
  using Net = Sequential<AffineCoupling<D, MLP<D>>, Permutation<D>>;
  Net root(make_coupling<D>(masks::half(4, 0), {8}, r1), Permutation<D>::random(4, r1));
  Net other(make_coupling<D>(masks::half(4, 0), {8}, r2), Permutation<D>::random(4, r2));
  randomize(layer<0>(root), 4);
  const Tensor<D> x = randn<D>(3, 4, 9);
  REQUIRE(to_host(root.forward(x).y) != to_host(other.forward(x).y));
  Recorder rec;
  dist::broadcast_state(root, rec);
  Replayer rep{rec.sent};
  dist::broadcast_state(other, rep);
  CHECK(rep.next == rec.sent.size());
  CHECK(to_host(root.forward(x).y) == to_host(other.forward(x).y));  // weights and the permutation (a buffer)
  std::vector<std::vector<double>> a, b;
  visit_buffers_of(root, [&](const std::string&, const Buffer& buf) { a.push_back(buf.values); }, "");
  visit_buffers_of(other, [&](const std::string&, const Buffer& buf) { b.push_back(buf.values); }, "");
  CHECK(a == b);
}

TEST_CASE("launch_from_environment: Open MPI, SLURM, MPICH and torchrun variables; none is one process; a bad value "
          "is an error naming the variable") {
  using Env = std::map<std::string, std::string>;
  auto read = [](const Env& e) {
    return dist::launch_from_environment([&e](const char* n) -> const char* {
      const auto it = e.find(n);
      return it == e.end() ? nullptr : it->second.c_str();
    });
  };
  const dist::LaunchInfo none = read({});
  CHECK(none.rank == 0);
  CHECK(none.size == 1);
  CHECK(none.launcher == "none");
  const dist::LaunchInfo ompi = read({{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"},
                                      {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                                      {"OMPI_MCA_ess_base_jobid", "123"}});
  CHECK(ompi.launcher == "Open MPI");
  CHECK(ompi.rank == 5);
  CHECK(ompi.size == 8);
  CHECK(ompi.local_rank == 1);
  CHECK(ompi.local_size == 4);
  CHECK(ompi.job_id == "123");
  // SLURM's per-node task count on an uneven placement reads "4(x2),3": this node's count is the first number.
  const dist::LaunchInfo slurm = read({{"SLURM_PROCID", "9"}, {"SLURM_NTASKS", "11"}, {"SLURM_LOCALID", "1"},
                                       {"SLURM_NTASKS_PER_NODE", "4(x2),3"}, {"SLURM_JOB_ID", "777"}});
  CHECK(slurm.launcher == "SLURM");
  CHECK(slurm.rank == 9);
  CHECK(slurm.local_size == 4);
  CHECK(slurm.job_id == "777");
  const dist::LaunchInfo torch = read({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "3"}});
  CHECK(torch.launcher == "torchrun");
  CHECK(torch.local_rank == 3);
  CHECK(torch.local_size == 4);  // absent: the world (one node)
  const dist::LaunchInfo mpich = read({{"PMI_RANK", "0"}, {"PMI_SIZE", "2"}});
  CHECK(mpich.launcher == "MPICH");
  CHECK(mpich.size == 2);
  // Open MPI wins over torchrun-style variables set by a wrapper.
  CHECK(read({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}}).rank == 1);
  CHECK(message<usage_error>([&] { read({{"RANK", "two"}, {"WORLD_SIZE", "4"}}); }).find("RANK='two'") !=
        std::string::npos);
  CHECK(message<usage_error>([&] { read({{"RANK", "4"}, {"WORLD_SIZE", "4"}}); }).find("rank 4 of 4") !=
        std::string::npos);
}

// ---- overlapping the all-reduce with the backward ------------------------------------------------------------

namespace {
/// Rank 0 of 2 whose peer holds the same values (every mean is the value itself), with non-blocking all-reduces
/// that complete only at the finish. It checks what a real engine cannot: a started range must not change before
/// the finish (on MPI or NCCL that is a race — the sum would mix old and new gradients).
struct AsyncScript {
  struct Started {
    const float* f;
    const double* d;
    long n;
    std::vector<double> snapshot;
  };
  std::vector<Started> started;
  long blocking = 0, values_started = 0, finishes = 0, modified_after_start = 0;
  int rank() const { return 0; }
  int size() const { return 2; }
  template <class T>
  void all_reduce(T*, long, dist::Reduce) {
    ++blocking;
  }
  template <class T>
  void broadcast(T*, long, int) {}
  void barrier() {}
  template <class T>
  void start_all_reduce(T* p, long n, dist::Reduce) {
    Started s{nullptr, nullptr, n, std::vector<double>(p, p + n)};
    if constexpr (std::is_same_v<T, float>) s.f = p;
    else s.d = p;
    started.push_back(std::move(s));
    values_started += n;
  }
  void finish_all_reduces() {
    for (const Started& s : started)
      for (long i = 0; i < s.n; ++i)
        if ((s.f ? double(s.f[i]) : s.d[i]) != s.snapshot[std::size_t(i)]) {
          ++modified_after_start;
          break;
        }
    started.clear();
    ++finishes;
  }
};
static_assert(dist::OverlappingCommunicator<AsyncScript>);

/// Runs two copies of a training run for `steps` steps — plainly, and data-parallel over AsyncScript with tiny
/// buckets — and checks the overlap's contract. Run: built by make(), has model(), optimization(), step(s) -> loss.
template <class Make>
void check_overlap(Make make, int steps) {
  auto plain = make(), dp = make();
  AsyncScript comm;
  const auto stats = dist::reduce_gradients(dp->optimization(), comm, {.overlap = true, .bucket_mb = 0.0008});
  for (int s = 0; s < steps; ++s) CHECK(plain->step(s) == dp->step(s));
  const long P = long(plain->optimization().flat()->size());
  CHECK(comm.values_started == steps * P);  // every gradient value reduced exactly once per step
  CHECK(comm.finishes == steps);
  CHECK(comm.blocking == steps);            // the loss and metrics: one small all-reduce per step
  CHECK(comm.modified_after_start == 0);    // no bucket started before its gradients were final
  CHECK(stats->buckets >= steps * (P / 100));
  CHECK(stats->early_buckets > 0);          // from the second step (the flat buffer exists) buckets start early
  CHECK(flat_values(plain->model()) == flat_values(dp->model()));
}
}  // namespace

TEST_CASE("GradientReady maps a child to the flat-buffer range of its gradients, once; parameters outside the buffer "
          "report nothing") {
  Rng r(2);
  auto a = make_coupling<D>(masks::half(4, 0), {8}, r), b = make_coupling<D>(masks::half(4, 1), {8}, r);
  Sequential<AffineCoupling<D, MLP<D>>, AffineCoupling<D, MLP<D>>> flow(a, b);
  FlatParameters<D> flat(flow);
  std::vector<std::pair<long, long>> heard;
  GradientReady<D> ready(flat.grads().data(), flat.size(), [&](long lo, long hi) { heard.emplace_back(lo, hi); });
  auto& second = std::get<1>(flow.layers());
  const long first_size = parameter_count(std::get<0>(flow.layers()));
  ready.done(second);
  ready.done(second);  // the cached range, the same answer
  ready.done(std::get<0>(flow.layers()));
  REQUIRE(heard.size() == 3);
  CHECK(heard[0] == std::pair<long, long>{first_size, flat.size()});
  CHECK(heard[1] == heard[0]);
  CHECK(heard[2] == std::pair<long, long>{0, first_size});
  ready.done(a);  // a copy that is not a view of the buffer: nothing to report
  CHECK(heard.size() == 3);
}

TEST_CASE("data parallel with overlap (Sequential in Repeat): buckets start during the backward once final, every "
          "value is reduced once, none changes after its start, training equals the plain run") {
  using Pair = Sequential<AffineCoupling<D, MLP<D>>, AffineCoupling<D, MLP<D>>>;
  using Flow = Repeat<dynamic, Pair>;
  struct Run {
    Flow f;
    MleTrainer<Flow> t;
    Tensor<D> x = randn<D>(32, 4, 5);
    explicit Run(Flow flow, TrainOptions o) : f(std::move(flow)), t(f, o) {}
    Flow& model() { return f; }
    Optimization<D>& optimization() { return t.optimization(); }
    double step(int) { return t.step(x).loss; }
  };
  check_overlap([] {
    Rng r(7);
    TrainOptions o;
    o.total_steps = 20;
    o.warmup = 2;
    return std::make_unique<Run>(Flow(3, [&](std::size_t) {
      return Pair(make_coupling<D>(masks::half(4, 0), {16}, r), make_coupling<D>(masks::half(4, 1), {16}, r));
    }), o);
  }, 5);
}

TEST_CASE("data parallel with overlap (TarFlow): block by block, with the same contract") {
  struct Run {
    TarFlow<D> f;
    MleTrainer<TarFlow<D>> t;
    Tensor<D> x, c;
    Run(TarFlow<D> flow, TrainOptions o) : f(std::move(flow)), t(f, o) {
      Rng r(3);
      x = randn<D>(8, 16, 4);
      std::vector<int> labels{0, 1, 2, 0, 1, 2, 3, 3};
      c = from_host<D>(data::one_hot<double>(labels, 4 + 1));
    }
    TarFlow<D>& model() { return f; }
    Optimization<D>& optimization() { return t.optimization(); }
    double step(int) { return t.step(x, c).loss; }
  };
  check_overlap([] {
    TarFlowConfig fc;
    fc.image = {1, 4, 4, 2, PatchOrder::channel_major};
    fc.width = 16;
    fc.blocks = 3;
    fc.layers = 1;
    fc.heads = 2;
    fc.num_classes = 4;
    Rng r(11);
    TrainOptions o;
    o.total_steps = 20;
    o.warmup = 2;
    return std::make_unique<Run>(TarFlow<D>(fc, r), o);
  }, 4);
}

TEST_CASE("data parallel with overlap (ReverseTrainer): G's stages start their buckets as the backward passes them") {
  using F = Sequential<LULinear<D>, ActNorm<D>, LULinear<D>>;
  using G = ReverseModel<D, MlpStage>;
  struct Run {
    F f;
    G g;
    HiddenAlignment<D> s;
    ReverseTrainer<F, G, HiddenAlignment<D>> t;
    typename ReverseTrainer<F, G, HiddenAlignment<D>>::Trainable trainable = t.trainable();  // G and the heads
    Rng rng{5};
    Tensor<D> x = randn<D>(16, 3, 4);
    Run(F flow, const ReverseConfig& c, Rng& r)
        : f(std::move(flow)), g(c, r), s(c, r), t(f, g, s, ReverseTrainOptions{}) {}
    auto& model() { return trainable; }
    Optimization<D>& optimization() { return t.optimization(); }
    double step(int) { return t.step(x, {}, rng).loss; }
  };
  check_overlap([] {
    Rng r(21);
    ReverseConfig c;
    c.tokens = 1;
    c.token_dim = 3;
    c.width = 16;
    c.stages = 3;
    c.layers = 1;
    return std::make_unique<Run>(F(LULinear<D>(3, r), ActNorm<D>(3), LULinear<D>(3, r)), c, r);
  }, 4);
}
