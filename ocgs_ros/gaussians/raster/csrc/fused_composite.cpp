// Fused front-to-back alpha compositing on the CPU, forward and backward, with gsplat's kernel rules
// (see compositing.py: pixel centre at +0.5, sigma = 0.5 (a dx^2 + c dy^2) + b dx dy,
// alpha = min(0.999, opacity * exp(-sigma)), pairs with sigma < 0 or alpha < 1/255 skipped, a pixel
// stops before the pair that would bring its transmittance to <= 1e-4).
//
// Why: the vectorised torch compositor materialises a dozen tensors per (pixel, Gaussian) pair and,
// for large renders, recomputes them under checkpointing; at the mapper's ~100 pairs per pixel that
// is most of a frame. Here each pixel walks its own pairs once (forward) and twice (backward: the
// walk is recomputed front to back, then the gradients run back to front), touching only the
// Gaussian's six projected numbers and its feature row. Serial over pixels on purpose: gradients of a
// Gaussian are summed over pixels in a fixed order, so results are bit-for-bit reproducible.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr double kAlphaMax = 0.999;
constexpr double kAlphaMin = 1.0 / 255.0;
constexpr double kTransmittanceMin = 1e-4;

template <typename scalar_t>
struct PairEval {
  int64_t gaussian;
  scalar_t dx, dy, alpha, falloff, transmittance;  // falloff = exp(-sigma); transmittance before the pair
  bool clamped;
};

template <typename scalar_t, typename index_t>
void walk_pixel(const scalar_t* table, int64_t num_gaussians, const index_t* gaussian_ids, int64_t begin,
                int64_t end, scalar_t px, scalar_t py, std::vector<PairEval<scalar_t>>& used,
                scalar_t& final_transmittance) {
  const scalar_t* mean_x = table;
  const scalar_t* mean_y = table + num_gaussians;
  const scalar_t* conic_a = table + 2 * num_gaussians;
  const scalar_t* conic_b = table + 3 * num_gaussians;
  const scalar_t* conic_c = table + 4 * num_gaussians;
  const scalar_t* opacity = table + 5 * num_gaussians;
  used.clear();
  scalar_t T = 1;
  for (int64_t k = begin; k < end; ++k) {
    const int64_t g = static_cast<int64_t>(gaussian_ids[k]);
    const scalar_t dx = mean_x[g] - px;
    const scalar_t dy = mean_y[g] - py;
    const scalar_t sigma = scalar_t(0.5) * (conic_a[g] * dx * dx + conic_c[g] * dy * dy) + conic_b[g] * dx * dy;
    if (sigma < 0) continue;
    const scalar_t falloff = std::exp(-sigma);
    scalar_t alpha = opacity[g] * falloff;
    const bool clamped = alpha > scalar_t(kAlphaMax);
    if (clamped) alpha = scalar_t(kAlphaMax);
    if (alpha < scalar_t(kAlphaMin)) continue;
    const scalar_t next_T = T * (1 - alpha);
    if (next_T <= scalar_t(kTransmittanceMin)) break;
    used.push_back({g, dx, dy, alpha, falloff, T, clamped});
    T = next_T;
  }
  final_transmittance = T;
}

template <typename scalar_t, typename index_t>
void forward_impl(const torch::Tensor& table, const torch::Tensor& features, const torch::Tensor& gaussian_ids,
                  const torch::Tensor& row_starts, int64_t width, int64_t height, torch::Tensor& out,
                  torch::Tensor& alpha_out) {
  const int64_t num_gaussians = table.size(1);
  const int64_t channels = features.size(1);
  const int64_t num_pixels = row_starts.size(0) - 1;
  const scalar_t* tab = table.data_ptr<scalar_t>();
  const scalar_t* feat = features.data_ptr<scalar_t>();
  const index_t* gid = gaussian_ids.data_ptr<index_t>();
  const int64_t* rows = row_starts.data_ptr<int64_t>();
  scalar_t* o = out.data_ptr<scalar_t>();
  scalar_t* a = alpha_out.data_ptr<scalar_t>();
  std::vector<PairEval<scalar_t>> used;
  const int64_t image_size = width * height;
  for (int64_t p = 0; p < num_pixels; ++p) {
    if (rows[p] == rows[p + 1]) continue;
    const int64_t in_image = p % image_size;
    scalar_t T;
    walk_pixel<scalar_t, index_t>(tab, num_gaussians, gid, rows[p], rows[p + 1],
                                  scalar_t(in_image % width) + scalar_t(0.5),
                                  scalar_t(in_image / width) + scalar_t(0.5), used, T);
    scalar_t* row = o + p * channels;
    for (const auto& e : used) {
      const scalar_t w = e.alpha * e.transmittance;
      const scalar_t* f = feat + e.gaussian * channels;
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) row[c] += w * f[c];
    }
    a[p] = 1 - T;
  }
}

template <typename scalar_t, typename index_t>
void backward_impl(const torch::Tensor& table, const torch::Tensor& features, const torch::Tensor& gaussian_ids,
                   const torch::Tensor& row_starts, int64_t width, int64_t height, const torch::Tensor& grad_out,
                   const torch::Tensor& grad_alpha, torch::Tensor& grad_table, torch::Tensor& grad_features) {
  const int64_t num_gaussians = table.size(1);
  const int64_t channels = features.size(1);
  const int64_t num_pixels = row_starts.size(0) - 1;
  const scalar_t* tab = table.data_ptr<scalar_t>();
  const scalar_t* feat = features.data_ptr<scalar_t>();
  const index_t* gid = gaussian_ids.data_ptr<index_t>();
  const int64_t* rows = row_starts.data_ptr<int64_t>();
  const scalar_t* go = grad_out.data_ptr<scalar_t>();
  const scalar_t* ga = grad_alpha.data_ptr<scalar_t>();
  scalar_t* gt = grad_table.data_ptr<scalar_t>();
  scalar_t* gf = grad_features.data_ptr<scalar_t>();
  scalar_t* g_mean_x = gt;
  scalar_t* g_mean_y = gt + num_gaussians;
  scalar_t* g_conic_a = gt + 2 * num_gaussians;
  scalar_t* g_conic_b = gt + 3 * num_gaussians;
  scalar_t* g_conic_c = gt + 4 * num_gaussians;
  scalar_t* g_opacity = gt + 5 * num_gaussians;
  const scalar_t* conic_a = tab + 2 * num_gaussians;
  const scalar_t* conic_b = tab + 3 * num_gaussians;
  const scalar_t* conic_c = tab + 4 * num_gaussians;
  std::vector<PairEval<scalar_t>> used;
  std::vector<scalar_t> behind(channels);  // sum of w_j f_j over the pairs behind the current one
  const int64_t image_size = width * height;
  for (int64_t p = 0; p < num_pixels; ++p) {
    if (rows[p] == rows[p + 1]) continue;
    const int64_t in_image = p % image_size;
    scalar_t T_final;
    walk_pixel<scalar_t, index_t>(tab, num_gaussians, gid, rows[p], rows[p + 1],
                                  scalar_t(in_image % width) + scalar_t(0.5),
                                  scalar_t(in_image / width) + scalar_t(0.5), used, T_final);
    if (used.empty()) continue;
    const scalar_t* g_row = go + p * channels;
    const scalar_t g_alpha_px = ga[p];
    std::fill(behind.begin(), behind.end(), scalar_t(0));
    scalar_t behind_alpha = 0;  // sum of w_j behind (the alpha output's "feature" is 1)
    for (auto it = used.rbegin(); it != used.rend(); ++it) {
      const auto& e = *it;
      const int64_t g = e.gaussian;
      const scalar_t w = e.alpha * e.transmittance;
      const scalar_t* f = feat + g * channels;
      scalar_t* gfr = gf + g * channels;
      const scalar_t inv_pass = 1 / (1 - e.alpha);
      // d out_c / d alpha = T f_c - (sum of w_j f_jc behind) / (1 - alpha); the two dot products
      // and the two updates are separate loops so that each vectorises
      scalar_t dot_front = 0, dot_behind = 0;
#pragma omp simd reduction(+ : dot_front, dot_behind)
      for (int64_t c = 0; c < channels; ++c) {
        dot_front += g_row[c] * f[c];
        dot_behind += g_row[c] * behind[c];
      }
      const scalar_t d_alpha = g_alpha_px * (e.transmittance - behind_alpha * inv_pass) +
                               e.transmittance * dot_front - inv_pass * dot_behind;
#pragma omp simd
      for (int64_t c = 0; c < channels; ++c) {
        gfr[c] += w * g_row[c];
        behind[c] += w * f[c];
      }
      behind_alpha += w;
      if (e.clamped) continue;  // no gradient through a clamped alpha (gsplat)
      g_opacity[g] += d_alpha * e.falloff;
      const scalar_t d_sigma = -d_alpha * e.alpha;
      const scalar_t a = conic_a[g], b = conic_b[g], c = conic_c[g];
      g_mean_x[g] += d_sigma * (a * e.dx + b * e.dy);
      g_mean_y[g] += d_sigma * (c * e.dy + b * e.dx);
      g_conic_a[g] += d_sigma * scalar_t(0.5) * e.dx * e.dx;
      g_conic_b[g] += d_sigma * e.dx * e.dy;
      g_conic_c[g] += d_sigma * scalar_t(0.5) * e.dy * e.dy;
    }
  }
}

void check_inputs(const torch::Tensor& table, const torch::Tensor& features, const torch::Tensor& gaussian_ids,
                  const torch::Tensor& row_starts) {
  TORCH_CHECK(table.device().is_cpu() && features.device().is_cpu(), "fused compositing runs on the CPU");
  TORCH_CHECK(table.dim() == 2 && table.size(0) == 6 && table.is_contiguous(), "table must be contiguous [6, G]");
  TORCH_CHECK(features.dim() == 2 && features.size(0) == table.size(1) && features.is_contiguous(),
              "features must be contiguous [G, X]");
  TORCH_CHECK(features.scalar_type() == table.scalar_type(), "table and features must share a dtype");
  TORCH_CHECK(row_starts.scalar_type() == torch::kInt64 && row_starts.is_contiguous(), "row_starts must be int64");
  TORCH_CHECK(gaussian_ids.is_contiguous() &&
                  (gaussian_ids.scalar_type() == torch::kInt32 || gaussian_ids.scalar_type() == torch::kInt64),
              "gaussian_ids must be contiguous int32 or int64");
}

template <typename Fn>
void dispatch(const torch::Tensor& table, const torch::Tensor& gaussian_ids, Fn&& fn) {
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "fused_composite", [&] {
    if (gaussian_ids.scalar_type() == torch::kInt32) {
      fn(scalar_t(0), int32_t(0));
    } else {
      fn(scalar_t(0), int64_t(0));
    }
  });
}

}  // namespace

std::vector<torch::Tensor> composite_forward(torch::Tensor table, torch::Tensor features, torch::Tensor gaussian_ids,
                                             torch::Tensor row_starts, int64_t width, int64_t height) {
  check_inputs(table, features, gaussian_ids, row_starts);
  // plain loops over tensor memory: other Python threads (the executor, object extraction) run meanwhile
  pybind11::gil_scoped_release no_gil;
  const int64_t num_pixels = row_starts.size(0) - 1;
  auto out = torch::zeros({num_pixels, features.size(1)}, features.options());
  auto alpha = torch::zeros({num_pixels}, features.options());
  dispatch(table, gaussian_ids, [&](auto s, auto i) {
    forward_impl<decltype(s), decltype(i)>(table, features, gaussian_ids, row_starts, width, height, out, alpha);
  });
  return {out, alpha};
}

std::vector<torch::Tensor> composite_backward(torch::Tensor table, torch::Tensor features, torch::Tensor gaussian_ids,
                                              torch::Tensor row_starts, int64_t width, int64_t height,
                                              torch::Tensor grad_out, torch::Tensor grad_alpha) {
  check_inputs(table, features, gaussian_ids, row_starts);
  pybind11::gil_scoped_release no_gil;
  grad_out = grad_out.contiguous().to(features.scalar_type());
  grad_alpha = grad_alpha.contiguous().to(features.scalar_type());
  auto grad_table = torch::zeros_like(table);
  auto grad_features = torch::zeros_like(features);
  dispatch(table, gaussian_ids, [&](auto s, auto i) {
    backward_impl<decltype(s), decltype(i)>(table, features, gaussian_ids, row_starts, width, height, grad_out,
                                            grad_alpha, grad_table, grad_features);
  });
  return {grad_table, grad_features};
}

// Footprint segments (a run of `length` consecutive pixels from `pixel_start`, owned by Gaussian row
// `gaussian`, in front-to-back order) -> one pair per pixel, ordered by pixel and, within a pixel, in
// segment order: the expansion and the stable sort by pixel in two linear passes, without the
// intermediate unsorted pair list.
std::vector<torch::Tensor> expand_segments_by_pixel(torch::Tensor segment_gaussian, torch::Tensor pixel_start,
                                                    torch::Tensor length, int64_t num_pixels, bool int32_out) {
  TORCH_CHECK(segment_gaussian.scalar_type() == torch::kInt64 && pixel_start.scalar_type() == torch::kInt64 &&
                  length.scalar_type() == torch::kInt64,
              "segments must be int64");
  segment_gaussian = segment_gaussian.contiguous();
  pixel_start = pixel_start.contiguous();
  length = length.contiguous();
  pybind11::gil_scoped_release no_gil;
  const int64_t segments = length.numel();
  const int64_t* gid = segment_gaussian.data_ptr<int64_t>();
  const int64_t* start = pixel_start.data_ptr<int64_t>();
  const int64_t* len = length.data_ptr<int64_t>();
  std::vector<int64_t> cursor(num_pixels + 1, 0);
  int64_t total = 0;
  for (int64_t s = 0; s < segments; ++s) {
    TORCH_CHECK(len[s] >= 0 && start[s] >= 0 && start[s] + len[s] <= num_pixels, "segment outside the image");
    for (int64_t p = start[s]; p < start[s] + len[s]; ++p) ++cursor[p + 1];
    total += len[s];
  }
  for (int64_t p = 0; p < num_pixels; ++p) cursor[p + 1] += cursor[p];
  const auto dtype = int32_out ? torch::kInt32 : torch::kInt64;
  auto gaussians = torch::empty({total}, torch::TensorOptions().dtype(dtype));
  auto pixels = torch::empty({total}, torch::TensorOptions().dtype(dtype));
  auto fill = [&](auto zero) {
    using index_t = decltype(zero);
    index_t* out_g = gaussians.data_ptr<index_t>();
    index_t* out_p = pixels.data_ptr<index_t>();
    for (int64_t s = 0; s < segments; ++s) {
      for (int64_t p = start[s]; p < start[s] + len[s]; ++p) {
        const int64_t at = cursor[p]++;
        out_g[at] = static_cast<index_t>(gid[s]);
        out_p[at] = static_cast<index_t>(p);
      }
    }
  };
  if (int32_out) {
    fill(int32_t(0));
  } else {
    fill(int64_t(0));
  }
  return {gaussians, pixels};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("expand_segments_by_pixel", &expand_segments_by_pixel, "footprint segments to pairs sorted by pixel (CPU)");
  m.def("forward", &composite_forward, "fused compositing forward (CPU)");
  m.def("backward", &composite_backward, "fused compositing backward (CPU)");
}
