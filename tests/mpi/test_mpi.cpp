// dist/mpi.hpp on real processes: run as `mpirun -np 2 biflow_mpi_tests` (ctest does). Collectives' semantics,
// rank 0's state reaching every rank, and the headline property of data-parallel training: two ranks at global batch
// B follow one process at batch B (same rows; only the order of floating-point sums differs), including the
// NaN guard and clipping, which must act on the global gradient alike on every rank.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <biflow/biflow.hpp>
#include <biflow/dist/mpi.hpp>
#include <cmath>
#include <limits>
#include <vector>

using namespace biflow;

namespace {
dist::MpiCommunicator* g_comm = nullptr;
dist::MpiCommunicator& comm() { return *g_comm; }
using D = Cpu<double>;

template <class L>
std::vector<double> values(L& l) {
  std::vector<double> g;
  l.visit_parameters([&](const std::string&, auto& p) {
    const HostMatrix<double> m = to_host(p.value).template cast<double>();
    g.insert(g.end(), m.data(), m.data() + m.size());
  }, "");
  return g;
}
using Net = Sequential<AffineCoupling<D, MLP<D>>, Permutation<D>, AffineCoupling<D, MLP<D>>>;
Net make_net(std::uint64_t seed) {
  Rng r(seed);
  return Net(make_coupling<D>(masks::half(3, 0), {16}, r), Permutation<D>::random(3, r),
             make_coupling<D>(masks::half(3, 1), {16}, r));
}
HostMatrix<double> global_batch(long n, std::uint64_t step) {
  Rng r(1000 + step);
  HostMatrix<double> x(n, 3);
  for (long i = 0; i < x.size(); ++i) x.data()[i] = r.normal() * (1 + 0.5 * double(i % 3));
  return x;
}
}  // namespace

TEST_CASE("MPI collectives: sum and mean all-reduce, broadcast from any root, in float and double") {
  const int r = comm().rank(), n = comm().size();
  REQUIRE(n >= 2);
  std::vector<double> d{double(r), 1.0, double(r * r)};
  comm().all_reduce(d.data(), 3, dist::Reduce::sum);
  double sq = 0;
  for (int i = 0; i < n; ++i) sq += double(i * i);
  CHECK(d[0] == double(n * (n - 1) / 2));
  CHECK(d[1] == double(n));
  CHECK(d[2] == sq);
  std::vector<float> f(100000, float(r + 1));  // a larger buffer
  comm().all_reduce(f.data(), long(f.size()), dist::Reduce::mean);
  CHECK(f.front() == doctest::Approx(double(n + 1) / 2));
  CHECK(f.back() == doctest::Approx(double(n + 1) / 2));
  double b = r == n - 1 ? 42.0 : -1.0;
  comm().broadcast(&b, 1, n - 1);
  CHECK(b == 42.0);
  Tensor<D> t = constant<D>(2, 2, double(r));
  dist::broadcast(comm(), t, 1);
  CHECK(to_host(t)(1, 1) == 1.0);
  CHECK_THROWS_AS(comm().broadcast(&b, 1, n), usage_error);
  comm().barrier();
  // Started (non-blocking) all-reduces, progressed and finished: the blocking results, means applied at the finish.
  std::vector<float> g(1000, float(r + 1));
  std::vector<double> h(10, double(r));
  comm().start_all_reduce(g.data(), 600, dist::Reduce::mean);
  comm().start_all_reduce(g.data() + 600, 400, dist::Reduce::sum);
  comm().start_all_reduce(h.data(), 10, dist::Reduce::sum);
  comm().progress();
  comm().finish_all_reduces();
  CHECK(g[0] == doctest::Approx(double(n + 1) / 2));
  CHECK(g[599] == doctest::Approx(double(n + 1) / 2));
  CHECK(g[600] == doctest::Approx(double(n * (n + 1) / 2)));
  CHECK(h[9] == double(n * (n - 1) / 2));
  comm().finish_all_reduces();  // nothing started: nothing to do
}

TEST_CASE("MPI local ranks: on one node the local rank is the rank and the local size the world size; the local "
          "ranks of a node are distinct") {
  const int r = comm().rank(), n = comm().size();
  // ctest starts every rank on this machine.
  CHECK(comm().local_size() == n);
  CHECK(comm().local_rank() == r);
  std::vector<double> seen(static_cast<std::size_t>(n), 0.0);
  seen[std::size_t(comm().local_rank())] = 1;
  comm().all_reduce(seen.data(), n, dist::Reduce::sum);
  for (double s : seen) CHECK(s == 1.0);
}

TEST_CASE("MPI broadcast_state: ranks built with different seeds end with rank 0's parameters and buffers") {
  Net net = make_net(std::uint64_t(11 + comm().rank()));
  CHECK(dist::parameter_divergence(net, comm()) > 0);
  dist::broadcast_state(net, comm());
  CHECK(dist::parameter_divergence(net, comm()) == 0.0);
  const Tensor<D> x = from_host<D>(global_batch(4, 0));
  HostMatrix<double> y = to_host(net.forward(x).y), y0 = y;
  comm().broadcast(y0.data(), long(y0.size()), 0);
  CHECK(y == y0);  // the permutation (a buffer) came along
}

TEST_CASE("MPI data parallel: 2 ranks at global batch B follow 1 process at batch B (double, 30 AdamW steps with "
          "clipping active)") {
  const int r = comm().rank(), n = comm().size();
  const long B = 64;
  // One all-reduce pass after the backward; buckets overlapped with it (one 4 MB bucket; 60-value buckets that
  // start while the backward runs, MPI_Iallreduce).
  dist::DataParallelOptions how{};
  SUBCASE("after the backward") { how.overlap = false; }
  SUBCASE("overlapped, one bucket") { how.overlap = true; }
  SUBCASE("overlapped, small buckets") { how.bucket_mb = 0.0005; }
  Net dp = make_net(11 + std::uint64_t(r)), single = make_net(11);  // dp's ranks start different: the broadcast fixes it
  TrainOptions o;
  o.total_steps = 30;
  o.warmup = 3;
  o.lr = 3e-3;
  o.clip = 0.5;  // small: clipping acts, on the global norm
  MleTrainer tdp(dp, o), ts(single, o);
  const auto stats = dist::make_data_parallel(tdp, dp, comm(), how);
  const dist::Shard sh = dist::shard(B, r, n);
  double max_loss_gap = 0;
  long clipped = 0;
  for (int s = 0; s < 30; ++s) {
    const HostMatrix<double> x = global_batch(B, std::uint64_t(s));
    const StepResult a = tdp.step(from_host<D>(HostMatrix<double>(x.middleRows(sh.begin, sh.size()))));
    const StepResult b = ts.step(from_host<D>(x));
    max_loss_gap = std::max(max_loss_gap, std::abs(a.loss - b.loss));
    CHECK(a.grad_norm == doctest::Approx(b.grad_norm).epsilon(1e-9));
    if (b.grad_norm > o.clip) ++clipped;
  }
  CHECK(clipped > 0);
  CHECK(max_loss_gap < 1e-9);
  const std::vector<double> p = values(dp), q = values(single);
  double gap = 0;
  for (std::size_t i = 0; i < p.size(); ++i) gap = std::max(gap, std::abs(p[i] - q[i]));
  INFO("largest parameter difference " << gap);
  CHECK(gap < 1e-9);
  CHECK(dist::parameter_divergence(dp, comm()) == 0.0);  // the ranks never drift apart
  if (how.overlap && how.bucket_mb < 0.001) CHECK(stats->early_buckets > 0);
  if (!how.overlap) CHECK(stats->early_buckets == 0);
}

TEST_CASE("MPI data parallel: a non-finite loss on one rank makes every rank skip the step") {
  const int r = comm().rank();
  Net net = make_net(5);
  TrainOptions o;
  o.verbose = false;
  MleTrainer t(net, o);
  dist::make_data_parallel(t, net, comm());
  const std::vector<double> before = values(net);
  HostMatrix<double> x = global_batch(8, 3);
  if (r == 1) x(0, 0) = std::numeric_limits<double>::quiet_NaN();
  const StepResult s = t.step(from_host<D>(x));
  CHECK(s.skipped);
  CHECK(t.skipped_steps() == 1);
  CHECK(values(net) == before);
  const StepResult ok = t.step(from_host<D>(global_batch(8, 4)));
  CHECK(!ok.skipped);
  CHECK(dist::parameter_divergence(net, comm()) == 0.0);
}

int main(int argc, char** argv) {
  dist::MpiSession session(argc, argv);
  int failed = 0;
  {
    dist::MpiCommunicator c;
    g_comm = &c;
    doctest::Context ctx(argc, argv);
    double f = ctx.run() != 0 ? 1.0 : 0.0;
    c.all_reduce(&f, 1, dist::Reduce::sum);  // every rank reports failure if one failed
    failed = f > 0 ? 1 : 0;
  }
  return failed;
}
