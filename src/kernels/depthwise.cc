// Depthwise convolution for MindSpore's CPU backend (ops.Custom, func_type "aot").
//
// MindSpore 2.10 hands oneDNN plain NCHW tensors, and for a depthwise (one group per channel)
// convolution oneDNN then falls back to im2col + GEMM: most of ProxylessNAS's CPU time.  These
// kernels compute the same convolution directly on blocks of V channels (V = 8 for the AVX2 and
// generic builds, 16 for the AVX-512 build, chosen at run time by src/native_depthwise.py).
//
// Layout: NCHW float32 in and out, square kernel k (odd), padding k / 2 on every side, dilation 1,
// stride S (a template parameter; entry points exist for S = 1 and 2).  Each job copies V channels of
// one image into a zero-padded, pixel-major buffer (V channels side by side per pixel), so that every
// multiply-add is one V-wide vector operation whatever the map size or stride; results are copied
// back to NCHW.  Jobs are spread over a pool of sleeping worker threads.
//
// Entry points follow MindSpore's AOT interface:
//   int F(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream, void *extra)
// and return 0 on success, non-zero when shapes or types are not what the kernel computes.
//   DwForwardS{1,2}(x, w) -> y                    y = conv(x, w)
//   DwForwardBiasS{1,2}(x, w, b) -> y             y = conv(x, w) + b
//   DwForwardBiasRelu6S{1,2}(x, w, b) -> y        y = min(max(conv(x, w) + b, 0), 6)
//   DwForwardInputBiasRelu6Bias[Relu6]S{1,2}(x, w, b, a) -> y
//                                                 the same on relu6(x + a): the bias and ReLU6 of the
//                                                 1x1 conv in front of it (a: one value per channel)
//   DwBackwardInputS{1,2}(dy, w, x) -> dx         x is read for its shape only
//   DwBackwardFilterS{1,2}(x, dy, w) -> dw        w is read for its shape only
//   Dense*: the same entry points for a dense convolution of at most 8 input channels (the first
//   layer), weight (cout, cin, k, k); see the section "Dense convolution" below.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace {

// A small pool of worker threads that sleep between calls.  Spinning workers (OpenMP's default)
// would compete for the cores with MindSpore's own threads running the next operator.
class Pool {
 public:
  static Pool &Get() {
    static Pool *pool = new Pool();  // never destroyed: workers stay parked until the process exits
    return *pool;
  }

  // Calls fn(begin, end) on contiguous chunks of [0, count), one chunk per thread, caller included.
  void For(int64_t count, const std::function<void(int64_t, int64_t)> &fn) {
    const int threads = static_cast<int>(std::min<int64_t>(count, workers_ + 1));
    std::unique_lock<std::mutex> busy(call_mutex_, std::try_to_lock);
    // run here when there is nothing to share, another call holds the pool, or this is a forked
    // child (it has the pool's memory but not its threads)
    if (threads <= 1 || !busy.owns_lock() || getpid() != owner_) {
      fn(0, count);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      count_ = count;
      threads_ = threads;
      pending_ = threads - 1;
      ++generation_;
    }
    start_.notify_all();
    fn(0, count / threads);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  Pool() : owner_(getpid()) {
    int threads = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) threads = CPU_COUNT(&set);
    if (const char *env = std::getenv("PROXYLESSNAS_KERNEL_THREADS")) {
      const int wanted = std::atoi(env);
      if (wanted > 0) threads = wanted;
    }
    for (int i = 1; i < threads; ++i) std::thread(&Pool::Work, this, i).detach();
    workers_ = threads - 1;
  }

  void Work(int index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int64_t, int64_t)> *job;
      int64_t begin = 0, end = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        start_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (index >= threads_) continue;  // this call uses fewer threads
        job = job_;
        begin = count_ * index / threads_;
        end = count_ * (index + 1) / threads_;
      }
      (*job)(begin, end);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (--pending_ == 0) done_.notify_one();
      }
    }
  }

  const pid_t owner_;
  int workers_ = 0;
  std::mutex call_mutex_;
  std::mutex mutex_;
  std::condition_variable start_, done_;
  const std::function<void(int64_t, int64_t)> *job_ = nullptr;
  int64_t count_ = 0;
  int threads_ = 1;
  int pending_ = 0;
  uint64_t generation_ = 0;
};

template <typename F>
void ParallelFor(int64_t count, F body) {
  Pool::Get().For(count, [&body](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) body(i);
  });
}

constexpr int kOk = 0;
constexpr int kBadArity = 1;
constexpr int kBadType = 2;
constexpr int kBadShape = 3;

// V channels side by side: every kernel works on blocks of V channels stored pixel by pixel
// (layout [row][column][V]), so each multiply-add handles V channels at once whatever the image
// size or stride.  GCC/Clang vector extensions: V = 8 fills one AVX register (SSE code where AVX is
// not enabled); the AVX-512 build (src/native_depthwise.py) passes -DDW_LANES=16, one zmm register.
#ifndef DW_LANES
#define DW_LANES 8
#endif
constexpr int V = DW_LANES;
static_assert(V == 8 || V == 16, "DW_LANES is 8 (AVX2 and generic builds) or 16 (AVX-512)");
typedef float Vec __attribute__((vector_size(V * sizeof(float))));
typedef double Vec2 __attribute__((vector_size(V * sizeof(double))));

struct Geometry {
  int64_t n, c, h, w;    // input
  int64_t k, pad;        // kernel side, padding
  int64_t oh, ow;        // output
  int64_t ph, pw;        // padded input
  int64_t blocks;        // channel blocks of V
};

bool IsFloat32(const char *dtype) { return std::strcmp(dtype, "float32") == 0 || std::strcmp(dtype, "float") == 0; }

// Geometry of x (n, c, h, w), weight (c, 1, k, k) and y (n, c, oh, ow); false when they do not fit.
bool MakeGeometry(const int64_t *x, const int64_t *wt, const int64_t *y, int64_t stride, Geometry *g) {
  g->n = x[0]; g->c = x[1]; g->h = x[2]; g->w = x[3];
  g->k = wt[2]; g->pad = wt[2] / 2;
  if (wt[0] != g->c || wt[1] != 1 || wt[3] != g->k || g->k % 2 == 0) return false;
  g->ph = g->h + 2 * g->pad;
  g->pw = g->w + 2 * g->pad;
  g->oh = (g->ph - g->k) / stride + 1;
  g->ow = (g->pw - g->k) / stride + 1;
  if (y[0] != g->n || y[1] != g->c || y[2] != g->oh || y[3] != g->ow) return false;
  g->blocks = (g->c + V - 1) / V;
  return g->n > 0 && g->c > 0 && g->h > 0 && g->w > 0;
}

// Arity and types of a call; every tensor is 4-d except the biases (1-d): bit i of `biases` set for
// parameter i.
bool CheckCall(int nparam, int expected, unsigned biases, int *ndims, const char **dtypes, int *status) {
  if (nparam != expected) { *status = kBadArity; return false; }
  for (int i = 0; i < nparam; ++i) {
    if (!IsFloat32(dtypes[i])) { *status = kBadType; return false; }
    if (ndims[i] != ((biases >> i) & 1u ? 1 : 4)) { *status = kBadShape; return false; }
  }
  return true;
}

// Checks of a gradient call (four 4-d float32 tensors; the result, the 4th, shaped like the 3rd, which is
// read for its shape only) and its geometry (depthwise or dense: MakeGeometry of G) from the tensors at
// x_index, w_index and y_index.
template <typename G>
int GradientGeometry(int nparam, int *ndims, int64_t **shapes, const char **dtypes, int x_index, int w_index,
                     int y_index, int64_t stride, G *g) {
  int status = kOk;
  if (!CheckCall(nparam, 4, 0u, ndims, dtypes, &status)) return status;
  if (!MakeGeometry(shapes[x_index], shapes[w_index], shapes[y_index], stride, g)) return kBadShape;
  for (int i = 0; i < 4; ++i) {
    if (shapes[3][i] != shapes[2][i]) return kBadShape;
  }
  return kOk;
}

// One job's scratch memory, of the calling thread (grown on demand, kept between calls): a padded
// input plane block, an output plane block and k*k vectors (weights or per-tap sums).
struct Buffers {
  Vec *padded, *plane, *taps;
};

Buffers JobBuffers(const Geometry &g) {
  thread_local std::vector<Vec> buffer;
  const int64_t padded = g.ph * g.pw, plane = g.oh * g.ow;
  const int64_t need = padded + plane + g.k * g.k;
  if (static_cast<int64_t>(buffer.size()) < need) buffer.resize(need);
  return {buffer.data(), buffer.data() + padded, buffer.data() + padded + plane};
}

// V rows of `n` floats (row i at src + i * stride) transposed into `n` vectors at dst.
inline void TransposeIn(const float *src, int64_t stride, int64_t n, Vec *dst) {
  int64_t j = 0;
  for (; j + V <= n; j += V) {  // V x V tiles: fixed trip counts the compiler turns into shuffles
    float tile[V][V];
    for (int i = 0; i < V; ++i) {
      for (int t = 0; t < V; ++t) tile[i][t] = src[i * stride + j + t];
    }
    for (int t = 0; t < V; ++t) {
      for (int i = 0; i < V; ++i) dst[j + t][i] = tile[i][t];
    }
  }
  for (; j < n; ++j) {
    for (int i = 0; i < V; ++i) dst[j][i] = src[i * stride + j];
  }
}

// `n` vectors at src transposed into V rows of `n` floats (row i at dst + i * stride).
inline void TransposeOut(const Vec *src, int64_t n, float *dst, int64_t stride) {
  int64_t j = 0;
  for (; j + V <= n; j += V) {
    float tile[V][V];
    for (int t = 0; t < V; ++t) {
      for (int i = 0; i < V; ++i) tile[i][t] = src[j + t][i];
    }
    for (int i = 0; i < V; ++i) {
      for (int t = 0; t < V; ++t) dst[i * stride + j + t] = tile[i][t];
    }
  }
  for (; j < n; ++j) {
    for (int i = 0; i < V; ++i) dst[i * stride + j] = src[j][i];
  }
}

// Channels [c0, c0 + V) of the planes at `src` (rows x cols each, `count` of them valid) into the
// blocked buffer `dst` of dst_cols columns, at row/column offset `offset`.  Missing channels stay 0.
void Gather(const float *src, int64_t count, int64_t rows, int64_t cols, Vec *dst, int64_t dst_cols,
            int64_t offset) {
  const int64_t plane = rows * cols;
  if (count == V) {
    for (int64_t r = 0; r < rows; ++r) TransposeIn(src + r * cols, plane, cols, dst + (r + offset) * dst_cols + offset);
    return;
  }
  float *out = reinterpret_cast<float *>(dst);
  for (int64_t ci = 0; ci < count; ++ci) {
    for (int64_t r = 0; r < rows; ++r) {
      float *row = out + ((r + offset) * dst_cols + offset) * V + ci;
      const float *in = src + ci * plane + r * cols;
      for (int64_t j = 0; j < cols; ++j) row[j * V] = in[j];
    }
  }
}

// The blocked buffer `src` (rows x src_cols, read from row/column `offset`) back into `count`
// planes of rows x cols at `dst`.
void Scatter(const Vec *src, int64_t src_cols, int64_t offset, int64_t count, int64_t rows, int64_t cols,
             float *dst) {
  const int64_t plane = rows * cols;
  if (count == V) {
    for (int64_t r = 0; r < rows; ++r) TransposeOut(src + (r + offset) * src_cols + offset, cols, dst + r * cols, plane);
    return;
  }
  const float *in = reinterpret_cast<const float *>(src);
  for (int64_t ci = 0; ci < count; ++ci) {
    for (int64_t r = 0; r < rows; ++r) {
      const float *row = in + ((r + offset) * src_cols + offset) * V + ci;
      float *out = dst + ci * plane + r * cols;
      for (int64_t j = 0; j < cols; ++j) out[j] = row[j * V];
    }
  }
}

// Weights of channels [c0, c0 + count) as k*k vectors (missing channels 0).
void BlockWeights(const float *wt, int64_t k, int64_t count, Vec *dst) {
  const int64_t taps = k * k;
  for (int64_t t = 0; t < taps; ++t) {
    for (int ci = 0; ci < V; ++ci) dst[t][ci] = ci < count ? wt[ci * taps + t] : 0.0f;
  }
}

template <int S>
void ForwardBlock(const Vec *in, const Vec *wv, Vec bias, bool relu6, const Geometry &g, Vec *out) {
  const int64_t k = g.k, pw = g.pw, ow = g.ow;
  const Vec zero = {};
  const Vec six = zero + 6.0f;
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const Vec *top = in + oy * S * pw;
    Vec *dst = out + oy * ow;
    int64_t ox = 0;
    for (; ox + 4 <= ow; ox += 4) {  // four outputs at once: independent sums, shared weight loads
      Vec a0 = bias, a1 = bias, a2 = bias, a3 = bias;
      for (int64_t ky = 0; ky < k; ++ky) {
        const Vec *row = top + ky * pw + ox * S;
        const Vec *wrow = wv + ky * k;
        for (int64_t kx = 0; kx < k; ++kx) {
          const Vec wk = wrow[kx];
          a0 += wk * row[kx];
          a1 += wk * row[kx + S];
          a2 += wk * row[kx + 2 * S];
          a3 += wk * row[kx + 3 * S];
        }
      }
      dst[ox] = a0; dst[ox + 1] = a1; dst[ox + 2] = a2; dst[ox + 3] = a3;
    }
    for (; ox < ow; ++ox) {
      Vec a = bias;
      for (int64_t ky = 0; ky < k; ++ky) {
        const Vec *row = top + ky * pw + ox * S;
        for (int64_t kx = 0; kx < k; ++kx) a += wv[ky * k + kx] * row[kx];
      }
      dst[ox] = a;
    }
    if (relu6) {
      for (int64_t i = 0; i < ow; ++i) {
        Vec v = dst[i];
        v = v < zero ? zero : v;
        dst[i] = v > six ? six : v;
      }
    }
  }
}

// The input's own bias and ReLU6, applied to the interior of a padded block (the padding stays 0,
// as the zeros the convolution pads the activated input with).
void InputBiasRelu6(const float *pre, int64_t count, const Geometry &g, Vec *in) {
  Vec bias = {};
  for (int64_t ci = 0; ci < count; ++ci) bias[ci] = pre[ci];
  const Vec zero = {};
  const Vec six = zero + 6.0f;
  for (int64_t r = 0; r < g.h; ++r) {
    Vec *row = in + (r + g.pad) * g.pw + g.pad;
    for (int64_t j = 0; j < g.w; ++j) {
      Vec v = row[j] + bias;
      v = v < zero ? zero : v;
      row[j] = v > six ? six : v;
    }
  }
}

template <int S>
int Forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int mode) {
  // mode 0: no bias; 1: bias; 2: bias + ReLU6; 3 and 4: as 1 and 2 on relu6(x + input bias), where
  // the input bias (the 4th parameter) and ReLU6 are those of the 1x1 conv in front, deferred to here
  const bool pre = mode >= 3;
  const int expected = mode == 0 ? 3 : (pre ? 5 : 4);
  int status = kOk;
  const unsigned biases = mode == 0 ? 0u : (pre ? 0b1100u : 0b100u);
  if (!CheckCall(nparam, expected, biases, ndims, dtypes, &status)) return status;
  Geometry g{};
  if (!MakeGeometry(shapes[0], shapes[1], shapes[expected - 1], S, &g)) return kBadShape;
  if (mode != 0 && shapes[2][0] != g.c) return kBadShape;
  if (pre && shapes[3][0] != g.c) return kBadShape;
  const float *x = static_cast<const float *>(params[0]);
  const float *wt = static_cast<const float *>(params[1]);
  const float *b = mode == 0 ? nullptr : static_cast<const float *>(params[2]);
  const float *pre_bias = pre ? static_cast<const float *>(params[3]) : nullptr;
  float *y = static_cast<float *>(params[expected - 1]);
  ParallelFor(g.n * g.blocks, [&](int64_t job) {
    const int64_t n = job / g.blocks, c0 = (job % g.blocks) * V, count = std::min<int64_t>(V, g.c - c0);
    const Buffers buf = JobBuffers(g);
    Vec *in = buf.padded, *out = buf.plane, *wv = buf.taps;
    std::memset(static_cast<void *>(in), 0, sizeof(Vec) * g.ph * g.pw);
    Gather(x + (n * g.c + c0) * g.h * g.w, count, g.h, g.w, in, g.pw, g.pad);
    if (pre) InputBiasRelu6(pre_bias + c0, count, g, in);
    BlockWeights(wt + c0 * g.k * g.k, g.k, count, wv);
    Vec bias = {};
    for (int64_t ci = 0; ci < count && b != nullptr; ++ci) bias[ci] = b[c0 + ci];
    ForwardBlock<S>(in, wv, bias, mode == 2 || mode == 4, g, out);
    Scatter(out, g.ow, 0, count, g.oh, g.ow, y + (n * g.c + c0) * g.oh * g.ow);
  });
  return kOk;
}

template <int S>
int BackwardInput(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  Geometry g{};
  // params: dy, w, x (shape only), dx
  const int status = GradientGeometry(nparam, ndims, shapes, dtypes, 2, 1, 0, S, &g);
  if (status != kOk) return status;
  const float *dy = static_cast<const float *>(params[0]);
  const float *wt = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[3]);
  ParallelFor(g.n * g.blocks, [&](int64_t job) {
    const int64_t n = job / g.blocks, c0 = (job % g.blocks) * V, count = std::min<int64_t>(V, g.c - c0);
    const Buffers buf = JobBuffers(g);
    Vec *acc = buf.padded, *grad = buf.plane, *wv = buf.taps;
    std::memset(static_cast<void *>(acc), 0, sizeof(Vec) * g.ph * g.pw);
    std::memset(static_cast<void *>(grad), 0, sizeof(Vec) * g.oh * g.ow);
    Gather(dy + (n * g.c + c0) * g.oh * g.ow, count, g.oh, g.ow, grad, g.ow, 0);
    BlockWeights(wt + c0 * g.k * g.k, g.k, count, wv);
    const int64_t k = g.k, pw = g.pw;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      for (int64_t ky = 0; ky < k; ++ky) {
        Vec *row = acc + (oy * S + ky) * pw;
        const Vec *wrow = wv + ky * k;
        const Vec *d = grad + oy * g.ow;
        for (int64_t kx = 0; kx < k; ++kx) {
          const Vec wk = wrow[kx];
          Vec *dst = row + kx;
          for (int64_t ox = 0; ox < g.ow; ++ox) dst[ox * S] += wk * d[ox];
        }
      }
    }
    Scatter(acc, g.pw, g.pad, count, g.h, g.w, dx + (n * g.c + c0) * g.h * g.w);
  });
  return kOk;
}

template <int S>
int BackwardFilter(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  Geometry g{};
  // params: x, dy, w (shape only), dw
  const int status = GradientGeometry(nparam, ndims, shapes, dtypes, 0, 2, 1, S, &g);
  if (status != kOk) return status;
  const float *x = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  float *dw = static_cast<float *>(params[3]);
  const int64_t k = g.k, taps = k * k, pw = g.pw;
  ParallelFor(g.blocks, [&](int64_t block) {
    const int64_t c0 = block * V, count = std::min<int64_t>(V, g.c - c0);
    const Buffers buf = JobBuffers(g);
    Vec *in = buf.padded, *grad = buf.plane, *row_sum = buf.taps;
    std::vector<Vec2> total(taps, Vec2{});
    for (int64_t n = 0; n < g.n; ++n) {
      std::memset(static_cast<void *>(in), 0, sizeof(Vec) * g.ph * g.pw);
      std::memset(static_cast<void *>(grad), 0, sizeof(Vec) * g.oh * g.ow);
      Gather(x + (n * g.c + c0) * g.h * g.w, count, g.h, g.w, in, g.pw, g.pad);
      Gather(dy + (n * g.c + c0) * g.oh * g.ow, count, g.oh, g.ow, grad, g.ow, 0);
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        // float sums over one output row, added to double totals: long sums stay exact enough
        for (int64_t t = 0; t < taps; ++t) row_sum[t] = Vec{};
        const Vec *d = grad + oy * g.ow;
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const Vec dv = d[ox];
          const Vec *base = in + oy * S * pw + ox * S;
          for (int64_t ky = 0; ky < k; ++ky) {
            const Vec *row = base + ky * pw;
            Vec *sum = row_sum + ky * k;
            for (int64_t kx = 0; kx < k; ++kx) sum[kx] += dv * row[kx];
          }
        }
        for (int64_t t = 0; t < taps; ++t) total[t] += __builtin_convertvector(row_sum[t], Vec2);
      }
    }
    for (int64_t ci = 0; ci < count; ++ci) {
      for (int64_t t = 0; t < taps; ++t) dw[(c0 + ci) * taps + t] = static_cast<float>(total[t][ci]);
    }
  });
  return kOk;
}

// ---------------------------------------------------------------------------------------------
// Dense convolution with few input channels (the first layer: 3 image channels in, at most
// kDenseMaxIn).  oneDNN runs this one as a slow reference kernel on AVX-512 CPUs; here V output
// channels are computed at once: every multiply-add is one weight vector (V output channels of one
// input channel and tap) times one input value.  Weight (cout, cin, k, k), same padding and strides
// as above.
// ---------------------------------------------------------------------------------------------
constexpr int64_t kDenseMaxIn = 8;
constexpr int64_t kDenseRows = 8;  // output rows per forward job

struct DenseGeometry {
  int64_t n, cin, h, w, cout, k, pad, oh, ow, ph, pw, blocks;
};

// Geometry of x (n, cin, h, w), weight (cout, cin, k, k) and y (n, cout, oh, ow); false when they do not fit.
bool MakeGeometry(const int64_t *x, const int64_t *wt, const int64_t *y, int64_t stride, DenseGeometry *g) {
  g->n = x[0]; g->cin = x[1]; g->h = x[2]; g->w = x[3];
  g->cout = wt[0]; g->k = wt[2]; g->pad = wt[2] / 2;
  if (wt[1] != g->cin || wt[3] != g->k || g->k % 2 == 0 || g->cin > kDenseMaxIn) return false;
  g->ph = g->h + 2 * g->pad;
  g->pw = g->w + 2 * g->pad;
  g->oh = (g->ph - g->k) / stride + 1;
  g->ow = (g->pw - g->k) / stride + 1;
  if (y[0] != g->n || y[1] != g->cout || y[2] != g->oh || y[3] != g->ow) return false;
  g->blocks = (g->cout + V - 1) / V;
  return g->n > 0 && g->cin > 0 && g->cout > 0 && g->h > 0 && g->w > 0;
}

// Padded input rows [r0, r0 + rows) (in padded coordinates) of every input channel of image `src`,
// as cin planes of rows x pw floats; rows and columns outside the image are 0.
void PadRows(const float *src, const DenseGeometry &g, int64_t r0, int64_t rows, float *dst) {
  std::memset(dst, 0, sizeof(float) * g.cin * rows * g.pw);
  for (int64_t ci = 0; ci < g.cin; ++ci) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t y = r0 + r - g.pad;
      if (y < 0 || y >= g.h) continue;
      std::memcpy(dst + (ci * rows + r) * g.pw + g.pad, src + (ci * g.h + y) * g.w, sizeof(float) * g.w);
    }
  }
}

// Weights of output channels [c0, c0 + count) as cin*k*k vectors (missing channels 0).
void DenseWeights(const float *wt, const DenseGeometry &g, int64_t c0, int64_t count, Vec *dst) {
  const int64_t taps = g.cin * g.k * g.k;
  for (int64_t t = 0; t < taps; ++t) {
    for (int co = 0; co < V; ++co) dst[t][co] = co < count ? wt[(c0 + co) * taps + t] : 0.0f;
  }
}

// Blocked rows (rows x ow vectors) into `count` output planes of oh x ow, starting at output row oy0.
void ScatterRows(const Vec *src, int64_t rows, int64_t count, const DenseGeometry &g, int64_t oy0, float *dst) {
  const int64_t plane = g.oh * g.ow;
  for (int64_t r = 0; r < rows; ++r) {
    if (count == V) {
      TransposeOut(src + r * g.ow, g.ow, dst + (oy0 + r) * g.ow, plane);
      continue;
    }
    const float *in = reinterpret_cast<const float *>(src + r * g.ow);
    for (int64_t co = 0; co < count; ++co) {
      for (int64_t j = 0; j < g.ow; ++j) dst[co * plane + (oy0 + r) * g.ow + j] = in[j * V + co];
    }
  }
}

template <int S>
int DenseForward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int mode) {
  // mode 0: no bias; 1: bias; 2: bias + ReLU6
  const int expected = mode == 0 ? 3 : 4;
  int status = kOk;
  if (!CheckCall(nparam, expected, mode == 0 ? 0u : 0b100u, ndims, dtypes, &status)) return status;
  DenseGeometry g{};
  if (!MakeGeometry(shapes[0], shapes[1], shapes[expected - 1], S, &g)) return kBadShape;
  if (mode != 0 && shapes[2][0] != g.cout) return kBadShape;
  const float *x = static_cast<const float *>(params[0]);
  const float *wt = static_cast<const float *>(params[1]);
  const float *b = mode == 0 ? nullptr : static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[expected - 1]);
  const int64_t bands = (g.oh + kDenseRows - 1) / kDenseRows, k = g.k, taps = g.cin * k * k;
  ParallelFor(g.n * g.blocks * bands, [&](int64_t job) {
    const int64_t n = job / (g.blocks * bands), c0 = (job / bands % g.blocks) * V;
    const int64_t count = std::min<int64_t>(V, g.cout - c0);
    const int64_t oy0 = job % bands * kDenseRows, rows = std::min<int64_t>(kDenseRows, g.oh - oy0);
    const int64_t in_rows = (rows - 1) * S + k;
    thread_local std::vector<Vec> vectors;
    thread_local std::vector<float> padded;
    if (static_cast<int64_t>(vectors.size()) < taps + rows * g.ow) vectors.resize(taps + rows * g.ow);
    if (static_cast<int64_t>(padded.size()) < g.cin * in_rows * g.pw) padded.resize(g.cin * in_rows * g.pw);
    Vec *wv = vectors.data(), *out = vectors.data() + taps;
    float *in = padded.data();
    PadRows(x + n * g.cin * g.h * g.w, g, oy0 * S, in_rows, in);
    DenseWeights(wt, g, c0, count, wv);
    Vec bias = {};
    for (int64_t co = 0; co < count && b != nullptr; ++co) bias[co] = b[c0 + co];
    const Vec zero = {};
    const Vec six = zero + 6.0f;
    for (int64_t r = 0; r < rows; ++r) {
      Vec *dst = out + r * g.ow;
      int64_t ox = 0;
      for (; ox + 4 <= g.ow; ox += 4) {  // four outputs at once: independent sums, shared weight loads
        Vec a0 = bias, a1 = bias, a2 = bias, a3 = bias;
        for (int64_t ci = 0; ci < g.cin; ++ci) {
          for (int64_t ky = 0; ky < k; ++ky) {
            const float *row = in + (ci * in_rows + r * S + ky) * g.pw + ox * S;
            const Vec *wrow = wv + (ci * k + ky) * k;
            for (int64_t kx = 0; kx < k; ++kx) {
              const Vec wk = wrow[kx];
              a0 += wk * row[kx];
              a1 += wk * row[kx + S];
              a2 += wk * row[kx + 2 * S];
              a3 += wk * row[kx + 3 * S];
            }
          }
        }
        dst[ox] = a0; dst[ox + 1] = a1; dst[ox + 2] = a2; dst[ox + 3] = a3;
      }
      for (; ox < g.ow; ++ox) {
        Vec a = bias;
        for (int64_t ci = 0; ci < g.cin; ++ci) {
          for (int64_t ky = 0; ky < k; ++ky) {
            const float *row = in + (ci * in_rows + r * S + ky) * g.pw + ox * S;
            for (int64_t kx = 0; kx < k; ++kx) a += wv[(ci * k + ky) * k + kx] * row[kx];
          }
        }
        dst[ox] = a;
      }
      if (mode == 2) {
        for (int64_t i = 0; i < g.ow; ++i) {
          Vec v = dst[i];
          v = v < zero ? zero : v;
          dst[i] = v > six ? six : v;
        }
      }
    }
    ScatterRows(out, rows, count, g, oy0, y + (n * g.cout + c0) * g.oh * g.ow);
  });
  return kOk;
}

template <int S>
int DenseBackwardInput(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  DenseGeometry g{};
  // params: dy, w, x (shape only), dx
  const int status = GradientGeometry(nparam, ndims, shapes, dtypes, 2, 1, 0, S, &g);
  if (status != kOk) return status;
  const float *dy = static_cast<const float *>(params[0]);
  const float *wt = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[3]);
  const int64_t k = g.k, taps = g.cin * k * k;
  // one job per image and input channel: sums over V output channels at a time, lanes added at the end
  ParallelFor(g.n * g.cin, [&](int64_t job) {
    const int64_t n = job / g.cin, ci = job % g.cin;
    thread_local std::vector<Vec> vectors;
    const int64_t need = taps + g.oh * g.ow + g.ph * g.pw;
    if (static_cast<int64_t>(vectors.size()) < need) vectors.resize(need);
    Vec *wv = vectors.data(), *grad = wv + taps, *acc = grad + g.oh * g.ow;
    std::memset(static_cast<void *>(acc), 0, sizeof(Vec) * g.ph * g.pw);
    for (int64_t c0 = 0; c0 < g.cout; c0 += V) {
      const int64_t count = std::min<int64_t>(V, g.cout - c0);
      std::memset(static_cast<void *>(grad), 0, sizeof(Vec) * g.oh * g.ow);
      Gather(dy + (n * g.cout + c0) * g.oh * g.ow, count, g.oh, g.ow, grad, g.ow, 0);
      DenseWeights(wt, g, c0, count, wv);
      const Vec *wc = wv + ci * k * k;
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        const Vec *d = grad + oy * g.ow;
        for (int64_t ky = 0; ky < k; ++ky) {
          Vec *row = acc + (oy * S + ky) * g.pw;
          for (int64_t kx = 0; kx < k; ++kx) {
            const Vec wk = wc[ky * k + kx];
            Vec *dst = row + kx;
            for (int64_t ox = 0; ox < g.ow; ++ox) dst[ox * S] += wk * d[ox];
          }
        }
      }
    }
    float *out = dx + (n * g.cin + ci) * g.h * g.w;
    for (int64_t y = 0; y < g.h; ++y) {
      const Vec *row = acc + (y + g.pad) * g.pw + g.pad;
      for (int64_t x = 0; x < g.w; ++x) {
        float sum = 0.0f;
        for (int l = 0; l < V; ++l) sum += row[x][l];
        out[y * g.w + x] = sum;
      }
    }
  });
  return kOk;
}

template <int S>
int DenseBackwardFilter(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  DenseGeometry g{};
  // params: x, dy, w (shape only), dw
  const int status = GradientGeometry(nparam, ndims, shapes, dtypes, 0, 2, 1, S, &g);
  if (status != kOk) return status;
  const float *x = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  float *dw = static_cast<float *>(params[3]);
  const int64_t k = g.k, taps = g.cin * k * k;
  ParallelFor(g.blocks, [&](int64_t block) {
    const int64_t c0 = block * V, count = std::min<int64_t>(V, g.cout - c0);
    thread_local std::vector<Vec> vectors;
    thread_local std::vector<float> padded;
    if (static_cast<int64_t>(vectors.size()) < taps + g.oh * g.ow) vectors.resize(taps + g.oh * g.ow);
    if (static_cast<int64_t>(padded.size()) < g.cin * g.ph * g.pw) padded.resize(g.cin * g.ph * g.pw);
    Vec *row_sum = vectors.data(), *grad = row_sum + taps;
    float *in = padded.data();
    std::vector<Vec2> total(taps, Vec2{});
    for (int64_t n = 0; n < g.n; ++n) {
      std::memset(static_cast<void *>(grad), 0, sizeof(Vec) * g.oh * g.ow);
      Gather(dy + (n * g.cout + c0) * g.oh * g.ow, count, g.oh, g.ow, grad, g.ow, 0);
      PadRows(x + n * g.cin * g.h * g.w, g, 0, g.ph, in);
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        // float sums over one output row, added to double totals: long sums stay exact enough
        for (int64_t t = 0; t < taps; ++t) row_sum[t] = Vec{};
        const Vec *d = grad + oy * g.ow;
        for (int64_t ci = 0; ci < g.cin; ++ci) {
          for (int64_t ky = 0; ky < k; ++ky) {
            const float *row = in + (ci * g.ph + oy * S + ky) * g.pw;
            Vec *sum = row_sum + (ci * k + ky) * k;
            for (int64_t ox = 0; ox < g.ow; ++ox) {
              const Vec dv = d[ox];
              const float *at = row + ox * S;
              for (int64_t kx = 0; kx < k; ++kx) sum[kx] += dv * at[kx];
            }
          }
        }
        for (int64_t t = 0; t < taps; ++t) total[t] += __builtin_convertvector(row_sum[t], Vec2);
      }
    }
    for (int64_t co = 0; co < count; ++co) {
      for (int64_t t = 0; t < taps; ++t) dw[(c0 + co) * taps + t] = static_cast<float>(total[t][co]);
    }
  });
  return kOk;
}

}  // namespace

#define DW_ENTRY(NAME, CALL)                                                                          \
  extern "C" int NAME(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, \
                      void *stream, void *extra) {                                                  \
    (void)stream;                                                                                   \
    (void)extra;                                                                                    \
    return CALL;                                                                                    \
  }

DW_ENTRY(DwForwardS1, (Forward<1>(nparam, params, ndims, shapes, dtypes, 0)))
DW_ENTRY(DwForwardS2, (Forward<2>(nparam, params, ndims, shapes, dtypes, 0)))
DW_ENTRY(DwForwardBiasS1, (Forward<1>(nparam, params, ndims, shapes, dtypes, 1)))
DW_ENTRY(DwForwardBiasS2, (Forward<2>(nparam, params, ndims, shapes, dtypes, 1)))
DW_ENTRY(DwForwardBiasRelu6S1, (Forward<1>(nparam, params, ndims, shapes, dtypes, 2)))
DW_ENTRY(DwForwardBiasRelu6S2, (Forward<2>(nparam, params, ndims, shapes, dtypes, 2)))
DW_ENTRY(DwForwardInputBiasRelu6BiasS1, (Forward<1>(nparam, params, ndims, shapes, dtypes, 3)))
DW_ENTRY(DwForwardInputBiasRelu6BiasS2, (Forward<2>(nparam, params, ndims, shapes, dtypes, 3)))
DW_ENTRY(DwForwardInputBiasRelu6BiasRelu6S1, (Forward<1>(nparam, params, ndims, shapes, dtypes, 4)))
DW_ENTRY(DwForwardInputBiasRelu6BiasRelu6S2, (Forward<2>(nparam, params, ndims, shapes, dtypes, 4)))
DW_ENTRY(DwBackwardInputS1, (BackwardInput<1>(nparam, params, ndims, shapes, dtypes)))
DW_ENTRY(DwBackwardInputS2, (BackwardInput<2>(nparam, params, ndims, shapes, dtypes)))
DW_ENTRY(DwBackwardFilterS1, (BackwardFilter<1>(nparam, params, ndims, shapes, dtypes)))
DW_ENTRY(DwBackwardFilterS2, (BackwardFilter<2>(nparam, params, ndims, shapes, dtypes)))

DW_ENTRY(DenseForwardS1, (DenseForward<1>(nparam, params, ndims, shapes, dtypes, 0)))
DW_ENTRY(DenseForwardS2, (DenseForward<2>(nparam, params, ndims, shapes, dtypes, 0)))
DW_ENTRY(DenseForwardBiasS1, (DenseForward<1>(nparam, params, ndims, shapes, dtypes, 1)))
DW_ENTRY(DenseForwardBiasS2, (DenseForward<2>(nparam, params, ndims, shapes, dtypes, 1)))
DW_ENTRY(DenseForwardBiasRelu6S1, (DenseForward<1>(nparam, params, ndims, shapes, dtypes, 2)))
DW_ENTRY(DenseForwardBiasRelu6S2, (DenseForward<2>(nparam, params, ndims, shapes, dtypes, 2)))
DW_ENTRY(DenseBackwardInputS1, (DenseBackwardInput<1>(nparam, params, ndims, shapes, dtypes)))
DW_ENTRY(DenseBackwardInputS2, (DenseBackwardInput<2>(nparam, params, ndims, shapes, dtypes)))
DW_ENTRY(DenseBackwardFilterS1, (DenseBackwardFilter<1>(nparam, params, ndims, shapes, dtypes)))
DW_ENTRY(DenseBackwardFilterS2, (DenseBackwardFilter<2>(nparam, params, ndims, shapes, dtypes)))

// Channels per vector this library was built with (8: AVX2 or generic, 16: AVX-512); the loader checks it.
extern "C" int DwLanes() { return V; }
