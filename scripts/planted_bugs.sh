#!/usr/bin/env bash
# Plants each bug of docs/testing.md in a scratch copy of the working tree, builds the one test file that should
# catch it (with tests/test_main.cpp) and runs it: a bug is "caught" when that test binary fails. Before the bugs,
# each test file is built and run unmutated once: it must pass, or a "caught" would prove nothing.
#   ./scripts/planted_bugs.sh            all bugs
#   ./scripts/planted_bugs.sh NAME...    some (names as in the table below)
# Needs g++, Eigen and doctest (./scripts/deps.sh). About a minute per bug on one core.
set -uo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
# name | file to mutate | perl substitution (applied with -0pi) | test file that must catch it [| doctest -tc filter]
bugs=(
  "coupling_mask_flipped|include/biflow/flow/coupling.hpp|s/mask_ = row_from_host<B>\(m\);\n    inv_mask_ = row_from_host<B>\(im\);/mask_ = row_from_host<B>(im);\n    inv_mask_ = row_from_host<B>(m);/|tests/test_flow_layers.cpp"
  "sequential_drops_first_logdet|include/biflow/flow/sequential.hpp|s/      acc.y = std::move\(o.y\);\n      seq_detail::add_logdet\(acc.logdet, o.logdet\);/      acc.y = std::move(o.y);\n      if (acc.logdet.rows() > 0) seq_detail::add_logdet(acc.logdet, o.logdet);/|tests/test_flow_layers.cpp"
  "composition_inverse_order_reversed|include/biflow/flow/sequential.hpp|s/\(step\(std::get<n - 1 - I>\(layers_\)\), ...\);/(step(std::get<I>(layers_)), ...);/|tests/test_flow_layers.cpp"
  "inverse_option_dropped_by_repeat|include/biflow/flow/sequential.hpp|s/child_inverse\(blocks_\[i\], acc.y, cond, want_logdet, opt\)/child_inverse(blocks_[i], acc.y, cond, want_logdet, seq_detail::NoOption{})/|tests/test_composition.cpp|*inverse option*"
  "batch_sampler_same_order_each_epoch|include/biflow/data/batch_sampler.hpp|s/Rng rng\(rng_detail::hash2\(seed_, epoch\)\);/Rng rng(rng_detail::hash2(seed_, 0));/|tests/test_data.cpp|*BatchSampler*"
  "standardize_logdet_sign|include/biflow/flow/standardize.hpp|s/repeated_logdet\(log_std_, x.rows\(\), -1.0\)/repeated_logdet(log_std_, x.rows(), 1.0)/|tests/test_flow_layers.cpp|*Standardize*"
  "sample_log_prob_adds_logdet|include/biflow/flow/distribution.hpp|s/map\(lp, fn::Sub\{\}, lp, o.logdet\)/map(lp, fn::Add{}, lp, o.logdet)/|tests/test_flow_layers.cpp|*sample_and_log_prob*"
  "tarflow_causal_shift_dropped|include/biflow/flow/tarflow_block.hpp|s/return concat_cols\(Tensor<B>\(N, 2 \* D\), slice_cols\(o, 0, \(Tn - 1\) \* 2 \* D\)\);/return o;/|tests/test_tarflow.cpp"
  "kv_cache_misses_current_token|include/biflow/nn/attention.hpp|s/const long i = cache.len, L = i \+ 1,/const long i = cache.len, L = std::max<long>(1, i),/|tests/test_tarflow.cpp"
  "score_sign_flipped|include/biflow/flow/score.hpp|s/fn::Axpby\{1.0, sigma \* sigma\}/fn::Axpby{1.0, -sigma * sigma}/|tests/test_tarflow.cpp"
  "reverse_stage_targets_swapped|include/biflow/reverse/reverse_model.hpp|s/return \(\(stages - 1 - j\) \* blocks\) \/ stages;/return (j * blocks) \/ stages;/|tests/test_reverse.cpp"
  "adamw_skips_float_backend|include/biflow/train/adamw.hpp|s/if \(!p.frozen\) for_each\(up,/if (!p.frozen \&\& !std::is_same_v<typename B::scalar, float>) for_each(up,/|tests/equality/test_equality_cpu.cpp"
  "linear_grad_ignores_mode|include/biflow/nn/linear.hpp|s/if \(wants_grad\(mode, weight\)\) gemm/if (!weight.frozen) gemm/|tests/test_nn_modules.cpp"
  "buffer_mismatch_ignored|include/biflow/io/safetensors.hpp|s/if \(b.structural && vals != b.values/if (false \&\& vals != b.values/|tests/test_io.cpp|*buffers*"
  "mlp_inference_drops_bias|include/biflow/nn/mlp.hpp|s/if \(lin_\[i\].has_bias\(\)\) map\(a, fn::BiasActValue/if (false) map(a, fn::BiasActValue/|tests/test_nn_modules.cpp"
  "flat_adamw_steps_frozen|include/biflow/train/adamw.hpp|s/flat.runs\(\[&\]\(std::size_t i\) \{ return !frozen\[i\]; \}\)/flat.runs([&](std::size_t) { return true; })/|tests/test_training.cpp|*fused optimiser*"
  "tensor_view_move_assign_ignored|include/biflow/backend/tensor.hpp|s/if \(view_ \S\S o\.view_\) return \*this = static_cast<const Tensor&>\(o\);/if (o.view_) return *this = static_cast<const Tensor\&>(o);/|tests/test_training.cpp|*flat parameters: every*"
  "additive_coupling_grad_ignores_mask|include/biflow/flow/coupling.hpp|s/    Tensor<B> dx = dy;\n    map\(dx, fn::AddMul\{\}, dx, dinp, mask_\);/    Tensor<B> dx = dy;\n    map(dx, fn::Add{}, dx, dinp);/|tests/test_flow_layers.cpp|NICE*"
  "iaf_params_miss_logdet|include/biflow/flow/autoregressive.hpp|s/zip\(fn::IafDAlpha\{clamp_, -1.0\}, w, ctx.z, dlogdet, ctx.a\)/zip(fn::IafDAlpha{clamp_, -1.0}, w, ctx.z, Tensor<B>(dlogdet.rows(), 1), ctx.a)/|tests/test_flow_layers.cpp|IAF*"
  "iaf_backward_one_sweep_short|include/biflow/flow/autoregressive.hpp|s/for \(long k = 0; k < d_; \+\+k\) \{\n      Tensor<B> vjp/for (long k = 1; k < d_; ++k) {\n      Tensor<B> vjp/|tests/test_flow_layers.cpp|IAF*"
  "spline_softmax_vjp_unscaled|include/biflow/flow/spline.hpp|s/dp\[j\] = cw \* k.sw\[j\]/dp[j] = k.sw[j]/|tests/test_splines.cpp|*finite differences*"
  "spline_coupling_grads_kept_dims|include/biflow/flow/spline.hpp|s/    map\(dp, fn::Mul\{\}, dp, param_mask_\);//|tests/test_splines.cpp|spline coupling*"
  "spline_inverse_wrong_root|include/biflow/flow/spline.hpp|s/\(-qb - std::sqrt\(disc\)\)/(-qb + std::sqrt(disc))/|tests/test_splines.cpp|*inverse undoes forward*"
  "planar_dw_drops_logdet_term|include/biflow/flow/planar.hpp|s/ \+ gm \* uh \+ dw;/ + dw;/|tests/test_vi.cpp|*pass the checker*"
  "radial_beta_unconstrained|include/biflow/flow/radial.hpp|s/return softplus\(b_raw\) - softplus\(a_raw\);/return b_raw - softplus(a_raw);/|tests/test_vi.cpp|*stay invertible*"
  "householder_projects_instead_of_reflecting|include/biflow/flow/householder.hpp|s/y - T\(2\) \* s \* v \/ n : y;/y - s * v \/ n : y;/|tests/test_vi.cpp|*pass the checker*"
  "sylvester_diagonal_not_bounded|include/biflow/flow/sylvester.hpp|s/return r \* U \+ std::tanh\(r\) \* I;/return r * U + r * I;/|tests/test_vi.cpp|Sylvester*"
  "elbo_logdet_gradient_sign|include/biflow/vi/elbo.hpp|s/constant<B>\(n_, 1, T\(-1.0 \/ n\)\)/constant<B>(n_, 1, T(1.0 \/ n))/|tests/test_vi.cpp|ElboTrainer*"
  "estimate_log_z_is_the_elbo|include/biflow/vi/elbo.hpp|s/e.log_z = mx \+ std::log\(s1 \/ double\(lw.size\(\)\)\);/e.log_z = mean;/|tests/test_vi.cpp|vi::estimate*"
  "u3_gradient_branch_sign|include/biflow/vi/target.hpp|s/\(dw - dw1\)\)\);/(dw + dw1)));/|tests/test_vi.cpp|toy targets*"
  "residual_logdet_grad_drops_tanh2|include/biflow/flow/residual.hpp|s/return acc \+ tbar \* \(T\(-2\) \* t \* \(T\(1\) - t \* t\)\) \* adot;/return acc;/|tests/test_residual.cpp|*passes the checker*"
  "residual_neumann_series_sign|include/biflow/flow/residual.hpp|s/\(j % 2 \? -1.0 : 1.0\) \* policy.weight\(j \+ 1\)/(j % 2 ? 1.0 : -1.0) * policy.weight(j + 1)/|tests/test_residual.cpp|stochastic*"
  "spectral_norm_grad_ignores_sigma|include/biflow/flow/residual.hpp|s/return sigma > T\(c\) \? s \* g - T\(c\) \* gw \/ \(sigma \* sigma\) \* uv : g;/return sigma > T(c) ? s * g : g;/|tests/test_residual.cpp|*passes the checker*"
  "mle_trainer_ignores_policy|include/biflow/train/trainer.hpp|s/nll_forward_backward\(flow_, x, cond, policy_\)/nll_forward_backward(flow_, x, cond)/|tests/test_residual.cpp|maximum likelihood with*"
  "nll_policy_not_passed_to_forward|include/biflow/train/nll.hpp|s/flow.forward\(x, ctx, cond, policy\)/flow.forward(x, ctx, cond, logdet::analytic)/|tests/test_residual.cpp|maximum likelihood with*"
  "dp_reducer_sums_gradients|include/biflow/dist/data_parallel.hpp|s/all_reduce\(comm, grads, Reduce::mean\);/all_reduce(comm, grads, Reduce::sum);/|tests/test_dist.cpp|data parallel*"
  "reverse_rows_take_first_shard|include/biflow/reverse/trainer.hpp|s/if \(rows.global > 0\) return slice_rows\(e, rows.begin, N\);/if (rows.global > 0) return slice_rows(e, 0, N);/|tests/test_reverse.cpp|trainer targets under data parallelism*"
  "reverse_reports_local_loss|include/biflow/reverse/trainer.hpp|s/    r.loss = sr.loss;\n//|tests/test_reverse.cpp|data-parallel ReverseTrainer*"
  "dp_metrics_not_reduced|include/biflow/train/optimization.hpp|s/std::copy\(scalars_.begin\(\) \+ 1, scalars_.end\(\), metrics.begin\(\)\);//|tests/test_reverse.cpp|data-parallel ReverseTrainer*"
  "launch_local_rank_is_rank|include/biflow/dist/launch.hpp|s/l.local_rank = launch_detail::number\(get, n.local_rank, l.rank\);/l.local_rank = l.rank;/|tests/test_dist.cpp|launch_from_environment*"
  "overlap_block_reported_before_backward|include/biflow/flow/sequential.hpp|s/      g = backward_with_ready\(blocks_\[i\], ready, ctx\[i\], g, dlogdet, i == 0 \? mode : inner\(mode\)\);\n      if \(ready\) ready->done\(blocks_\[i\]\);/      if (ready) ready->done(blocks_[i]);\n      g = backward_with_ready(blocks_[i], ready, ctx[i], g, dlogdet, i == 0 ? mode : inner(mode));/|tests/test_dist.cpp|data parallel with overlap*"
  "overlap_bucket_starts_half_full|include/biflow/dist/data_parallel.hpp|s/if \(count_\[std::size_t\(k\)\] == hi\(k\) - lo\(k\) \&\&/if (2 * count_[std::size_t(k)] >= hi(k) - lo(k) \&\&/|tests/test_dist.cpp|data parallel with overlap*"
  "reverse_stage_reported_before_backward|include/biflow/reverse/reverse_model.hpp|s/        du = stages\[js\].backward\(ctx.stages\[js\], du, m\);\n        finished\(stages\[js\]\);/        finished(stages[js]);\n        du = stages[js].backward(ctx.stages[js], du, m);/|tests/test_dist.cpp|*ReverseTrainer*"
  "lane_sum_drops_tail|include/biflow/backend/cpu/reduce.hpp|s/  return acc\[0\] \+ tail;/  return acc[0];/|tests/test_backend_ops.cpp|*lane*,*wide rows*"
  "layernorm_backward_drops_xhat_term|include/biflow/backend/cpu/ops.hpp|s/rs \* \(g\[c\] \* ga\[c\] - s1 - \(\(xr\[c\] - mu\) \* rs\) \* s2\)/rs * (g[c] * ga[c] - s1)/|tests/test_backend_ops.cpp|*wide rows*"
  "arena_never_reuses|include/biflow/backend/cpu/arena.hpp|s/auto it = free.find\(bytes\);/auto it = free.find(bytes + 1);/|tests/test_memory.cpp"
  "householder_context_appends|include/biflow/flow/householder.hpp|s/    if \(ctx\) ctx->inputs.clear\(\);\n//|tests/test_vi.cpp|*Householder*"
  "tensor_copy_keeps_old_shape|include/biflow/backend/tensor.hpp|s/      else reshape\(o.rows\(\), o.cols\(\)\);  \/\/ same size: the buffer is kept/      else {}/|tests/test_memory.cpp"
  "dp_shards_overlap|include/biflow/dist/data_parallel.hpp|s/return \{long\(rank\) \* per, long\(rank \+ 1\) \* per\};/return {0, per};/|tests/test_dist.cpp|dist::shard*"
  "fixed_point_stops_after_one_step|include/biflow/flow/residual.hpp|s/if \(rep.max_change <= tol\) \{/if (true) {/|tests/test_residual.cpp|*passes the checker*"
  "checker_blind_identity_layer|tests/test_flow_layers.cpp|s/    auto layer = make_coupling<B>\(mask, \{8, 8\}, rng\);\n    randomize\(layer, 2\);/    auto layer = make_coupling<B>(mask, {8, 8}, rng);/|tests/test_flow_layers.cpp"
)
want=("$@")
work=$(mktemp -d /tmp/biflow_planted.XXXXXX)
trap 'rm -rf "$work"' EXIT
flags=(-std=c++20 -O1 -I/usr/include/eigen3 -DBIFLOW_SOURCE_DIR="\"$src\"" -DBIFLOW_CHECKPOINT_WRITER="\"/bin/false\"")
build_and_run() {  # $1 tree, $2 test file, $3 log, $4 optional test-case filter
  local main=$1/tests/test_main.cpp
  [ "$2" = tests/equality/test_equality_cpu.cpp ] && main=""  # that file has its own main
  g++ "${flags[@]}" -I"$1/include" -I"$1/tests" $main "$1/$2" -o "$1/t" > "$3" 2>&1 || { echo "build failed: $3"; tail -5 "$3"; return 2; }
  local filter=()
  [ -n "${4:-}" ] && filter=("-tc=$4")
  (cd "$1" && OMP_WAIT_POLICY=passive timeout 600 ./t "${filter[@]}") >> "$3" 2>&1 && return 0 || return 1
}
declare -A baseline
status=0
printf '%-36s %-40s %s\n' "bug" "caught by" "result"
for b in "${bugs[@]}"; do
  IFS='|' read -r name file subst test filter <<< "$b"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $name "* ]]; then continue; fi
  if [ -z "${baseline[$test$filter]:-}" ]; then
    rm -rf "$work/base" && mkdir -p "$work/base" && cp -r include tests "$work/base/"
    if build_and_run "$work/base" "$test" "$work/base.log" "$filter"; then baseline[$test$filter]=ok; else
      echo "unmutated $test does not pass: see $work/base.log"; cat "$work/base.log" | tail -20; exit 1; fi
  fi
  rm -rf "$work/m" && mkdir -p "$work/m" && cp -r include tests "$work/m/"
  before=$(md5sum "$work/m/$file")
  perl -0pi -e "$subst" "$work/m/$file"
  if [ "$(md5sum "$work/m/$file")" = "$before" ]; then
    printf '%-36s %-40s %s\n' "$name" "$test" "NOT PLANTED (the substitution no longer matches)"; status=1; continue
  fi
  build_and_run "$work/m" "$test" "$work/$name.log" "$filter"
  rc=$?
  if [ $rc = 1 ]; then
    printf '%-36s %-40s %s\n' "$name" "$test" "caught: $(grep -m1 -E 'ERROR|TEST CASE' "$work/$name.log" | cut -c1-60)"
  elif [ $rc = 2 ]; then
    printf '%-36s %-40s %s\n' "$name" "$test" "caught at compile time"
  else
    printf '%-36s %-40s %s\n' "$name" "$test" "NOT CAUGHT"; status=1
  fi
done
exit $status
