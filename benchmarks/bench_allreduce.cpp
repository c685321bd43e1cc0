// bench_allreduce: the cost of data parallelism's one collective — the mean all-reduce of the flat gradient buffer
// (dist::all_reduce over dist::MpiCommunicator, what every data-parallel step runs) — against the buffer size, up
// to a BiFlow-B/2-sized model's fp32 gradients. Run under MPI:
//   mpirun -np 2 build/benchmarks/bench_allreduce [--max 140000000] [--reps 7] [--out rows.csv]
// Prints per size the median time over reps (after one warm-up), the algorithm bandwidth (bytes / time) and the bus
// bandwidth (bytes · 2(N−1)/N / time: what each rank sends and receives in a ring), on rank 0.
// (MPI and Google Benchmark do not mix: every rank must run the same iterations in step, so this is a plain loop.)
#include <biflow/biflow.hpp>
#include <biflow/dist/mpi.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

using namespace biflow;

int main(int argc, char** argv) try {
  dist::MpiSession session(argc, argv);
  dist::MpiCommunicator comm;
  long max_n = 140000000, reps = 7;
  std::string out;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--max") max_n = std::atol(argv[i + 1]);
    else if (k == "--reps") reps = std::atol(argv[i + 1]);
    else if (k == "--out") out = argv[i + 1];
    else throw usage_error("bench_allreduce: unknown option " + k + " (--max N, --reps R, --out F.csv)");
  }
  const bool lead = comm.rank() == 0;
  std::vector<long> sizes;
  for (long n = 1000; n < max_n; n *= 10) sizes.push_back(n);
  sizes.push_back(max_n);
  std::ofstream csv;
  if (lead && !out.empty()) {
    csv.open(out);
    csv << "ranks,floats,bytes,median_ms,algbw_gbs,busbw_gbs\n";
  }
  if (lead)
    std::printf("mean all-reduce of float32 buffers over %d ranks (median of %ld after a warm-up)\n%14s %12s %12s %14s %14s\n",
                comm.size(), reps, "floats", "MB", "ms", "algbw GB/s", "busbw GB/s");
  for (long n : sizes) {
    Tensor<Cpu<float>> t = constant<Cpu<float>>(n, 1, 1.0f);
    std::vector<double> ms;
    for (long r = 0; r <= reps; ++r) {
      comm.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      dist::all_reduce(comm, t, dist::Reduce::mean);
      const double v = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0) ms.push_back(v);
    }
    // Every rank's slowest time is the step's: take the max over ranks of each rank's median.
    std::nth_element(ms.begin(), ms.begin() + long(ms.size() / 2), ms.end());
    double med = ms[ms.size() / 2];
    std::vector<double> all(std::size_t(comm.size()), 0.0);
    all[std::size_t(comm.rank())] = med;
    comm.all_reduce(all.data(), long(all.size()), dist::Reduce::sum);
    med = *std::max_element(all.begin(), all.end());
    const double bytes = 4.0 * double(n), alg = bytes / (med * 1e-3) / 1e9;
    const double bus = alg * 2.0 * double(comm.size() - 1) / double(comm.size());
    if (to_host(t)(0, 0) != 1.0f) throw numeric_error("bench_allreduce: the mean of equal buffers changed them");
    if (lead) {
      std::printf("%14ld %12.2f %12.3f %14.2f %14.2f\n", n, bytes / 1e6, med, alg, bus);
      if (csv.is_open()) csv << comm.size() << "," << n << "," << long(bytes) << "," << med << "," << alg << "," << bus << "\n";
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_allreduce: %s\n", e.what());
  return 1;
}
