// One LSTMP layer (one direction) over a whole sequence on the CPU, forward and backward.
//
// The twin of lstmlm.nn.lstm.lstmp_layer_reference (same equations, gate order i, f, g, o).
// What makes it fast on a few cores:
//   * the input half of the gates is one (T*B, I) x (I, 4H) product before the loop;
//   * each step is one BLAS gemm accumulating into a preallocated gate buffer plus one fused
//     pointwise loop (peepholes, activations, cell and output in a single pass), with no Python and
//     no tensor dispatch in between (the per-step products call the BLAS that torch links: MKL's
//     packed GEMM with each weight packed once per sequence, else sgemm_ / dgemm_, found with
//     dlsym; at::mm on the same memory where none is exported);
//   * backward runs the recurrence with one (B, 4H) x (4H, R) product per step and leaves every
//     weight gradient to a single large product over all T*B rows after the loop.
// Saved for backward: the activated gates (T, B, 4H) and the cells (T, B, H); m_t = o_t * tanh(c_t)
// is recomputed in backward rather than stored.
// The large sequence buffers come from a small workspace that hands a buffer out again once nothing
// else holds it (the next training step): a fresh 200 MB tensor costs ~60 ms of page faults here.
//
// Registered as torch.ops.lstmlm_cpu.{forward,backward}; built by lstmlm/kernels/cpu.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <type_traits>
#include <dlfcn.h>

#include <cmath>
#include <vector>

namespace {

using at::Tensor;

// Built with -ffast-math so that gcc vectorises exp with glibc's libmvec; those vector exps assume
// finite results, so arguments are clamped where exp would overflow float (|x| > 88). At the clamp
// the functions are already saturated: sigmoid(-80) = 2e-35, tanh(40) = 1 - 4e-35.
template <typename scalar_t>
inline scalar_t sigmoid(scalar_t x) {
  x = std::min(std::max(x, scalar_t(-80)), scalar_t(80));
  return scalar_t(1) / (scalar_t(1) + std::exp(-x));
}

template <typename scalar_t>
inline scalar_t tanh_(scalar_t x) {  // (1 - e) / (1 + e), e = exp(-2|x|): no cancellation near +-1
  scalar_t e = std::exp(scalar_t(-2) * std::min(std::abs(x), scalar_t(40)));
  return std::copysign((scalar_t(1) - e) / (scalar_t(1) + e), x);
}

// Fortran BLAS gemm (LP64), as exported by the BLAS that libtorch_cpu carries (MKL in the x86 wheels).
template <typename scalar_t>
using gemm_fn = void (*)(const char*, const char*, const int*, const int*, const int*, const scalar_t*,
                         const scalar_t*, const int*, const scalar_t*, const int*, const scalar_t*, scalar_t*,
                         const int*);

template <typename scalar_t>
gemm_fn<scalar_t> blas_gemm() {
  static const gemm_fn<scalar_t> fn = [] {
    const char* name = std::is_same_v<scalar_t, float> ? "sgemm_" : "dgemm_";
    void* torch_cpu = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);  // loaded already, not as global
    void* symbol = torch_cpu != nullptr ? dlsym(torch_cpu, name) : nullptr;
    return reinterpret_cast<gemm_fn<scalar_t>>(symbol != nullptr ? symbol : dlsym(RTLD_DEFAULT, name));
  }();
  return fn;
}

bool has_blas() { return blas_gemm<float>() != nullptr && blas_gemm<double>() != nullptr; }

// Row-major C (M, N) = beta * C + A (M, K) @ B, where B is stored (K, N), or (N, K) when b_is_nk
// (then the product is A @ B^T). Pointers to contiguous rows; one BLAS call, no tensors.
template <typename scalar_t>
void matmul(const scalar_t* a, const scalar_t* b, scalar_t* c, int64_t M, int64_t N, int64_t K, bool b_is_nk,
            scalar_t beta) {
  if (auto gemm = blas_gemm<scalar_t>(); gemm != nullptr && std::max({M, N, K}) < (int64_t(1) << 31)) {
    // column-major view: C^T (N, M) = op(B)^T (N, K) @ A^T (K, M)
    const int m = int(N), n = int(M), k = int(K), lda = int(b_is_nk ? K : N), ldb = int(K), ldc = int(N);
    const char transa = b_is_nk ? 'T' : 'N', transb = 'N';
    const scalar_t alpha = 1;
    gemm(&transa, &transb, &m, &n, &k, &alpha, b, &lda, a, &ldb, &beta, c, &ldc);
    return;
  }
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<scalar_t>::value);
  Tensor A = at::from_blob(const_cast<scalar_t*>(a), {M, K}, options);
  Tensor Bm = b_is_nk ? at::from_blob(const_cast<scalar_t*>(b), {N, K}, options).t()
                      : at::from_blob(const_cast<scalar_t*>(b), {K, N}, options);
  Tensor C = at::from_blob(c, {M, N}, options);
  if (beta == scalar_t(0)) {
    at::mm_out(C, A, Bm);
  } else {
    C.addmm_(A, Bm, beta, 1);
  }
}

// MKL's packed GEMM (cblas_sgemm_pack / _compute, exported by libtorch_cpu where torch uses MKL):
// a weight used by every step is reordered once per sequence instead of inside every sgemm call.
using pack_size_fn = size_t (*)(int, int, int, int);
using pack_fn = void (*)(int, int, int, int, int, int, float, const float*, int, float*);
using compute_fn = void (*)(int, int, int, int, int, int, const float*, int, const float*, int, float, float*, int);
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162;

struct MklPacked {
  pack_size_fn size = nullptr;
  pack_fn pack = nullptr;
  compute_fn compute = nullptr;
};

const MklPacked& mkl_packed() {
  static const MklPacked fns = [] {
    MklPacked f;
    void* torch_cpu = dlopen("libtorch_cpu.so", RTLD_LAZY | RTLD_NOLOAD);
    if (torch_cpu == nullptr) return f;
    f.size = reinterpret_cast<pack_size_fn>(dlsym(torch_cpu, "cblas_sgemm_pack_get_size"));
    f.pack = reinterpret_cast<pack_fn>(dlsym(torch_cpu, "cblas_sgemm_pack"));
    f.compute = reinterpret_cast<compute_fn>(dlsym(torch_cpu, "cblas_sgemm_compute"));
    if (f.size == nullptr || f.pack == nullptr || f.compute == nullptr) f = MklPacked();
    return f;
  }();
  return fns;
}

// The product of every step with one weight: C (M, N) = beta * C + A (M, K) @ W, W stored (K, N),
// or (N, K) when w_is_nk (then A @ W^T). Packs W once when MKL's packed GEMM is there (float).
template <typename scalar_t>
class StepProduct {
 public:
  StepProduct(const scalar_t* w, int64_t M, int64_t N, int64_t K, bool w_is_nk)
      : w_(w), M_(M), N_(N), K_(K), w_is_nk_(w_is_nk) {
    const MklPacked& mkl = mkl_packed();
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (w != nullptr && mkl.pack != nullptr && std::max({M, N, K}) < (int64_t(1) << 31)) {
        const size_t bytes = mkl.size(kBMatrix, int(M), int(N), int(K));
        packed_ = at::empty({int64_t(bytes / sizeof(float)) + 16}, at::kFloat);
        mkl.pack(kRowMajor, kBMatrix, w_is_nk ? kTrans : kNoTrans, int(M), int(N), int(K), 1.0f, w,
                 int(w_is_nk ? K : N), packed_.data_ptr<float>());
      }
    }
  }

  void operator()(const scalar_t* a, scalar_t* c, scalar_t beta) const {
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (packed_.defined()) {
        mkl_packed().compute(kRowMajor, kNoTrans, kPacked, int(M_), int(N_), int(K_), a, int(K_),
                             packed_.data_ptr<float>(), int(w_is_nk_ ? K_ : N_), beta, c, int(N_));
        return;
      }
    }
    matmul<scalar_t>(a, w_, c, M_, N_, K_, w_is_nk_, beta);
  }

 private:
  const scalar_t* w_;
  int64_t M_, N_, K_;
  bool w_is_nk_;
  Tensor packed_;
};

// Buffers of at least kMinBytes are kept after use and handed out again for the same dtype and size
// once no tensor, view or saved-for-backward reference besides the workspace's own holds their
// storage (checked by reference count). At most kKept are kept, the least recently used dropped.
class Workspace {
 public:
  Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    const int64_t numel = c10::multiply_integers(sizes);
    if (numel * int64_t(options.dtype().itemsize()) < kMinBytes) return at::empty(sizes, options);
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = kept_.begin(); it != kept_.end(); ++it) {
      if (it->numel() == numel && it->dtype() == options.dtype() && free(*it)) {
        Tensor buffer = *it;
        kept_.erase(it);
        kept_.push_back(buffer);  // most recently used last
        return handout(buffer, sizes, options);
      }
    }
    Tensor buffer = at::empty({numel}, options);
    kept_.push_back(buffer);
    while (int64_t(kept_.size()) > kKept) {
      auto oldest_free = std::find_if(kept_.begin(), kept_.end(), [](const Tensor& t) { return free(t); });
      if (oldest_free == kept_.end()) break;
      kept_.erase(oldest_free);
    }
    return handout(buffer, sizes, options);
  }

 private:
  // A new tensor on the buffer's storage: not a view (no autograd view rules, its own version
  // counter), and while it or anything made from it lives the storage is not free.
  static Tensor handout(const Tensor& buffer, at::IntArrayRef sizes, const at::TensorOptions& options) {
    Tensor t = at::empty({0}, options);
    t.set_(buffer.storage(), 0, sizes, c10::contiguous_strides(sizes));
    return t;
  }
  static bool free(const Tensor& t) { return t.use_count() == 1 && t.storage().use_count() == 1; }
  static constexpr int64_t kMinBytes = int64_t(4) << 20;
  static constexpr int64_t kKept = 12;
  std::mutex mutex_;
  std::deque<Tensor> kept_;
};

Workspace& workspace() {
  static Workspace* w = new Workspace();  // never destroyed: no tensor freed after torch shuts down
  return *w;
}

template <typename scalar_t>
void add(const scalar_t* a, const scalar_t* b, scalar_t* out, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = a[j] + b[j];
}

// Rows of the batch per parallel chunk: enough elements that a thread's work outweighs waking it.
inline int64_t grain(int64_t hidden) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(hidden, 1)); }

const Tensor& or_undefined(const c10::optional<Tensor>& t) {
  static const Tensor undefined;
  return t.has_value() ? *t : undefined;
}

// Forward pointwise step. gates (B, 4H) hold pre-activations on entry, activations on exit.
template <typename scalar_t>
void forward_step(scalar_t* gates, const scalar_t* c_prev, scalar_t* c_out, scalar_t* m_out,
                  const scalar_t* w_ci, const scalar_t* w_cf, const scalar_t* w_co,
                  int64_t batch, int64_t hidden) {
  at::parallel_for(0, batch, grain(hidden), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      scalar_t* gi = gates + b * 4 * hidden;
      scalar_t* gf = gi + hidden;
      scalar_t* gg = gf + hidden;
      scalar_t* go = gg + hidden;
      const scalar_t* cp = c_prev + b * hidden;
      scalar_t* c = c_out + b * hidden;
      scalar_t* m = m_out + b * hidden;
      if (w_ci != nullptr) {
#pragma omp simd
        for (int64_t j = 0; j < hidden; ++j) {
          scalar_t i = sigmoid(gi[j] + w_ci[j] * cp[j]);
          scalar_t f = sigmoid(gf[j] + w_cf[j] * cp[j]);
          scalar_t g = tanh_(gg[j]);
          scalar_t cn = f * cp[j] + i * g;
          scalar_t o = sigmoid(go[j] + w_co[j] * cn);
          gi[j] = i; gf[j] = f; gg[j] = g; go[j] = o;
          c[j] = cn;
          m[j] = o * tanh_(cn);
        }
      } else {
#pragma omp simd
        for (int64_t j = 0; j < hidden; ++j) {
          scalar_t i = sigmoid(gi[j]);
          scalar_t f = sigmoid(gf[j]);
          scalar_t g = tanh_(gg[j]);
          scalar_t cn = f * cp[j] + i * g;
          scalar_t o = sigmoid(go[j]);
          gi[j] = i; gf[j] = f; gg[j] = g; go[j] = o;
          c[j] = cn;
          m[j] = o * tanh_(cn);
        }
      }
    }
  });
}

// Backward pointwise step. dm (B, H): gradient of m_t; dc (B, H): gradient of c_t from step t+1 on
// entry, of c_{t-1} on exit. Writes the pre-activation gate gradients (B, 4H) and, if m_out is not
// null, m_t (for the projection's weight gradient).
template <typename scalar_t>
void backward_step(const scalar_t* gates, const scalar_t* c_cur, const scalar_t* c_prev,
                   const scalar_t* dm, scalar_t* dc, scalar_t* dgates, scalar_t* m_out,
                   const scalar_t* w_ci, const scalar_t* w_cf, const scalar_t* w_co,
                   int64_t batch, int64_t hidden) {
  at::parallel_for(0, batch, grain(hidden), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* ai = gates + b * 4 * hidden;
      const scalar_t* af = ai + hidden;
      const scalar_t* ag = af + hidden;
      const scalar_t* ao = ag + hidden;
      scalar_t* di = dgates + b * 4 * hidden;
      scalar_t* df = di + hidden;
      scalar_t* dg = df + hidden;
      scalar_t* dout = dg + hidden;
      const scalar_t* c = c_cur + b * hidden;
      const scalar_t* cp = c_prev + b * hidden;
      const scalar_t* dmb = dm + b * hidden;
      scalar_t* dcb = dc + b * hidden;
      scalar_t* m = m_out == nullptr ? nullptr : m_out + b * hidden;
      const bool peep = w_ci != nullptr;
#pragma omp simd
      for (int64_t j = 0; j < hidden; ++j) {
        scalar_t i = ai[j], f = af[j], g = ag[j], o = ao[j];
        scalar_t tc = tanh_(c[j]);
        scalar_t d_o = dmb[j] * tc * o * (scalar_t(1) - o);
        scalar_t d_c = dcb[j] + dmb[j] * o * (scalar_t(1) - tc * tc);
        if (peep) d_c += d_o * w_co[j];
        scalar_t d_i = d_c * g * i * (scalar_t(1) - i);
        scalar_t d_f = d_c * cp[j] * f * (scalar_t(1) - f);
        scalar_t d_g = d_c * i * (scalar_t(1) - g * g);
        scalar_t d_cp = d_c * f;
        if (peep) d_cp += d_i * w_ci[j] + d_f * w_cf[j];
        di[j] = d_i; df[j] = d_f; dg[j] = d_g; dout[j] = d_o;
        dcb[j] = d_cp;
        if (m != nullptr) m[j] = o * tc;
      }
    }
  });
}

// The layer's weights, contiguous; the peepholes and the projection undefined where absent.
struct LayerWeights {
  LayerWeights(const Tensor& w_ih_in, const Tensor& w_hh_in, const c10::optional<Tensor>& w_ci_opt,
               const c10::optional<Tensor>& w_cf_opt, const c10::optional<Tensor>& w_co_opt,
               const c10::optional<Tensor>& w_hr_opt)
      : w_ih(w_ih_in.contiguous()), w_hh(w_hh_in.contiguous()),
        w_ci(w_ci_opt ? w_ci_opt->contiguous() : Tensor()), w_cf(w_cf_opt ? w_cf_opt->contiguous() : Tensor()),
        w_co(w_co_opt ? w_co_opt->contiguous() : Tensor()), w_hr(w_hr_opt ? w_hr_opt->contiguous() : Tensor()),
        peep(w_ci_opt.has_value()), proj(w_hr_opt.has_value()) {}
  Tensor w_ih, w_hh, w_ci, w_cf, w_co, w_hr;  // (4H, I), (4H, R), (H,) x 3, (R, H)
  bool peep, proj;
};

// Returns output (T, B, R), h_n (B, R), c_n (B, H), gates (T, B, 4H) activated, cells (T, B, H).
std::vector<Tensor> lstmp_forward(const Tensor& x_in, const Tensor& h0_in, const Tensor& c0_in,
                                  const Tensor& w_ih_in, const Tensor& w_hh_in,
                                  const c10::optional<Tensor>& bias_opt,
                                  const c10::optional<Tensor>& w_ci_opt, const c10::optional<Tensor>& w_cf_opt,
                                  const c10::optional<Tensor>& w_co_opt, const c10::optional<Tensor>& w_hr_opt) {
  at::NoGradGuard no_grad;
  const Tensor x = x_in.contiguous(), h0 = h0_in.contiguous(), c0 = c0_in.contiguous();
  const Tensor& bias = or_undefined(bias_opt);
  const LayerWeights w(w_ih_in, w_hh_in, w_ci_opt, w_cf_opt, w_co_opt, w_hr_opt);
  const Tensor &w_ih = w.w_ih, &w_hh = w.w_hh, &w_ci = w.w_ci, &w_cf = w.w_cf, &w_co = w.w_co, &w_hr = w.w_hr;
  const bool peep = w.peep, proj = w.proj;
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  const int64_t H = w_hh.size(0) / 4, R = w_hh.size(1);
  TORCH_CHECK(T > 0, "lstmp_forward: empty sequence");

  Workspace& ws = workspace();
  Tensor gates = ws.empty({T * B, 4 * H}, x.options());  // (T*B, 4H)
  if (bias.defined()) {
    at::addmm_out(gates, bias.expand({T * B, 4 * H}), x.view({T * B, I}), w_ih.t());
  } else {
    at::mm_out(gates, x.view({T * B, I}), w_ih.t());
  }
  gates = gates.view({T, B, 4 * H});
  Tensor cells = ws.empty({T, B, H}, x.options());
  Tensor out = ws.empty({T, B, R}, x.options());
  Tensor m_buf = proj ? at::empty({B, H}, x.options()) : Tensor();

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmp_forward", [&] {
    const scalar_t* pci = peep ? w_ci.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pcf = peep ? w_cf.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pco = peep ? w_co.data_ptr<scalar_t>() : nullptr;
    scalar_t* G = gates.data_ptr<scalar_t>();  // (T, B, 4H)
    scalar_t* C = cells.data_ptr<scalar_t>();  // (T, B, H)
    scalar_t* O = out.data_ptr<scalar_t>();  // (T, B, R)
    scalar_t* M = proj ? m_buf.data_ptr<scalar_t>() : nullptr;  // (B, H)
    const scalar_t* W_hh = w_hh.data_ptr<scalar_t>();  // (4H, R)
    const scalar_t* W_hr = proj ? w_hr.data_ptr<scalar_t>() : nullptr;  // (R, H)
    const StepProduct<scalar_t> recurrent(W_hh, B, 4 * H, R, /*w_is_nk=*/true);  // r_{t-1} W_hh^T
    const StepProduct<scalar_t> project(W_hr, B, R, H, /*w_is_nk=*/true);  // m_t W_hr^T
    for (int64_t t = 0; t < T; ++t) {
      scalar_t* g_t = G + t * B * 4 * H;
      const scalar_t* r_prev = t == 0 ? h0.data_ptr<scalar_t>() : O + (t - 1) * B * R;
      recurrent(r_prev, g_t, 1);  // g_t += r_{t-1} W_hh^T
      const scalar_t* c_prev = t == 0 ? c0.data_ptr<scalar_t>() : C + (t - 1) * B * H;
      scalar_t* m_t = proj ? M : O + t * B * R;  // (B, H)
      forward_step<scalar_t>(g_t, c_prev, C + t * B * H, m_t, pci, pcf, pco, B, H);
      if (proj) project(M, O + t * B * R, 0);  // r_t = m_t W_hr^T
    }
  });
  return {out, out[T - 1].clone(), cells[T - 1].clone(), gates, cells};
}

// Returns dx, dh0, dc0, dw_ih, dw_hh, dbias, dw_ci, dw_cf, dw_co, dw_hr (empty where not applicable).
std::vector<Tensor> lstmp_backward(const Tensor& dout_in, const Tensor& dh_n, const Tensor& dc_n,
                                   const Tensor& x_in, const Tensor& h0_in, const Tensor& c0_in,
                                   const Tensor& w_ih_in, const Tensor& w_hh_in,
                                   const c10::optional<Tensor>& w_ci_opt, const c10::optional<Tensor>& w_cf_opt,
                                   const c10::optional<Tensor>& w_co_opt, const c10::optional<Tensor>& w_hr_opt,
                                   const Tensor& out, const Tensor& gates, const Tensor& cells,
                                   bool has_bias, bool need_dx) {
  at::NoGradGuard no_grad;
  const Tensor x = x_in.contiguous(), h0 = h0_in.contiguous(), c0 = c0_in.contiguous();
  const Tensor dout = dout_in.contiguous();
  const LayerWeights w(w_ih_in, w_hh_in, w_ci_opt, w_cf_opt, w_co_opt, w_hr_opt);
  const Tensor &w_ih = w.w_ih, &w_hh = w.w_hh, &w_ci = w.w_ci, &w_cf = w.w_cf, &w_co = w.w_co, &w_hr = w.w_hr;
  const bool peep = w.peep, proj = w.proj;
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  const int64_t H = w_hh.size(0) / 4, R = w_hh.size(1);

  Workspace& ws = workspace();
  Tensor dgates = ws.empty({T, B, 4 * H}, x.options());
  Tensor dc = dc_n.contiguous().clone();  // (B, H), carried backwards
  Tensor dh = dh_n.contiguous().clone();  // (B, R), gradient of r_t from above and from step t+1
  Tensor dr_all = proj ? ws.empty({T, B, R}, x.options()) : Tensor();  // for dw_hr
  Tensor m_all = proj ? ws.empty({T, B, H}, x.options()) : Tensor();
  Tensor dm = at::empty({B, H}, x.options());

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lstmp_backward", [&] {
    const scalar_t* pci = peep ? w_ci.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pcf = peep ? w_cf.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pco = peep ? w_co.data_ptr<scalar_t>() : nullptr;
    const scalar_t* G = gates.data_ptr<scalar_t>();  // (T, B, 4H)
    const scalar_t* C = cells.data_ptr<scalar_t>();  // (T, B, H)
    const scalar_t* dO = dout.data_ptr<scalar_t>();  // (T, B, R)
    scalar_t* dG = dgates.data_ptr<scalar_t>();  // (T, B, 4H)
    scalar_t* dR = proj ? dr_all.data_ptr<scalar_t>() : nullptr;  // (T, B, R)
    scalar_t* M = proj ? m_all.data_ptr<scalar_t>() : nullptr;  // (T, B, H)
    scalar_t* dM = dm.data_ptr<scalar_t>();  // (B, H)
    scalar_t* dH = dh.data_ptr<scalar_t>();  // (B, R)
    const scalar_t* W_hh = w_hh.data_ptr<scalar_t>();  // (4H, R)
    const scalar_t* W_hr = proj ? w_hr.data_ptr<scalar_t>() : nullptr;  // (R, H)
    const StepProduct<scalar_t> recurrent(W_hh, B, R, 4 * H, /*w_is_nk=*/false);  // dg_t W_hh
    const StepProduct<scalar_t> project(W_hr, B, H, R, /*w_is_nk=*/false);  // dr_t W_hr
    for (int64_t t = T - 1; t >= 0; --t) {
      if (proj) {
        scalar_t* dr_t = dR + t * B * R;
        add<scalar_t>(dO + t * B * R, dH, dr_t, B * R);  // dr_t = dout_t + dh   (B, R)
        project(dr_t, dM, 0);  // dm = dr_t W_hr   (B, H)
      } else {
        add<scalar_t>(dO + t * B * R, dH, dM, B * R);
      }
      const scalar_t* c_prev = t == 0 ? c0.data_ptr<scalar_t>() : C + (t - 1) * B * H;
      scalar_t* dg_t = dG + t * B * 4 * H;  // (B, 4H)
      backward_step<scalar_t>(G + t * B * 4 * H, C + t * B * H, c_prev, dM, dc.data_ptr<scalar_t>(), dg_t,
                              proj ? M + t * B * H : nullptr, pci, pcf, pco, B, H);
      recurrent(dg_t, dH, 0);  // dh = dg_t W_hh: gradient of r_{t-1}
    }
  });

  const Tensor dg_flat = dgates.view({T * B, 4 * H});
  Tensor dx = need_dx ? at::mm(dg_flat, w_ih).view({T, B, I}) : Tensor();
  Tensor dw_ih = at::mm(dg_flat.t(), x.view({T * B, I}));  // (4H, I)
  Tensor dw_hh = at::mm(dgates[0].t(), h0);  // (4H, R)
  if (T > 1) dw_hh.addmm_(dgates.narrow(0, 1, T - 1).reshape({(T - 1) * B, 4 * H}).t(),
                          out.narrow(0, 0, T - 1).reshape({(T - 1) * B, R}));
  Tensor dbias = has_bias ? dg_flat.sum(0) : Tensor();
  Tensor dw_ci, dw_cf, dw_co;
  if (peep) {
    // c_{t-1} for every step: c0, then cells[0 .. T-2]
    Tensor c_prev = T > 1 ? at::cat({c0.unsqueeze(0), cells.narrow(0, 0, T - 1)}, 0) : c0.unsqueeze(0);
    dw_ci = (dgates.narrow(2, 0, H) * c_prev).sum({0, 1});
    dw_cf = (dgates.narrow(2, H, H) * c_prev).sum({0, 1});
    dw_co = (dgates.narrow(2, 3 * H, H) * cells).sum({0, 1});
  }
  Tensor dw_hr = proj ? at::mm(dr_all.view({T * B, R}).t(), m_all.view({T * B, H})) : Tensor();  // (R, H)
  return {dx, dh, dc, dw_ih, dw_hh, dbias, dw_ci, dw_cf, dw_co, dw_hr};
}

}  // namespace

TORCH_LIBRARY(lstmlm_cpu, m) {
  m.def("forward(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? bias, Tensor? w_ci, "
        "Tensor? w_cf, Tensor? w_co, Tensor? w_hr) -> Tensor[]");
  m.def("has_blas() -> bool", &has_blas);
  m.def("backward(Tensor dout, Tensor dh_n, Tensor dc_n, Tensor x, Tensor h0, Tensor c0, Tensor w_ih, "
        "Tensor w_hh, Tensor? w_ci, Tensor? w_cf, Tensor? w_co, Tensor? w_hr, Tensor out, Tensor gates, "
        "Tensor cells, bool has_bias, bool need_dx) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(lstmlm_cpu, CPU, m) {
  m.impl("forward", &lstmp_forward);
  m.impl("backward", &lstmp_backward);
}
