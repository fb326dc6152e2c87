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
//   DwBackwardInputS{1,2}(dy, w, x) -> dx         x is read for its shape only
//   DwBackwardFilterS{1,2}(x, dy, w) -> dw        w is read for its shape only
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

// Arity and types of a call; every tensor is 4-d except the bias (1-d) at `bias_index` (-1: none).
bool CheckCall(int nparam, int expected, int bias_index, int *ndims, const char **dtypes, int *status) {
  if (nparam != expected) { *status = kBadArity; return false; }
  for (int i = 0; i < nparam; ++i) {
    if (!IsFloat32(dtypes[i])) { *status = kBadType; return false; }
    if (ndims[i] != (i == bias_index ? 1 : 4)) { *status = kBadShape; return false; }
  }
  return true;
}

// Checks of a gradient call (four 4-d float32 tensors; the result, the 4th, shaped like the 3rd, which is
// read for its shape only) and its geometry from the tensors at x_index, w_index and y_index.
int GradientGeometry(int nparam, int *ndims, int64_t **shapes, const char **dtypes, int x_index, int w_index,
                     int y_index, int64_t stride, Geometry *g) {
  int status = kOk;
  if (!CheckCall(nparam, 4, -1, ndims, dtypes, &status)) return status;
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

template <int S>
int Forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, int mode) {
  // mode 0: no bias; 1: bias; 2: bias + ReLU6
  const int expected = mode == 0 ? 3 : 4;
  int status = kOk;
  if (!CheckCall(nparam, expected, mode == 0 ? -1 : 2, ndims, dtypes, &status)) return status;
  Geometry g{};
  if (!MakeGeometry(shapes[0], shapes[1], shapes[expected - 1], S, &g)) return kBadShape;
  if (mode != 0 && shapes[2][0] != g.c) return kBadShape;
  const float *x = static_cast<const float *>(params[0]);
  const float *wt = static_cast<const float *>(params[1]);
  const float *b = mode == 0 ? nullptr : static_cast<const float *>(params[2]);
  float *y = static_cast<float *>(params[expected - 1]);
  ParallelFor(g.n * g.blocks, [&](int64_t job) {
    const int64_t n = job / g.blocks, c0 = (job % g.blocks) * V, count = std::min<int64_t>(V, g.c - c0);
    const Buffers buf = JobBuffers(g);
    Vec *in = buf.padded, *out = buf.plane, *wv = buf.taps;
    std::memset(static_cast<void *>(in), 0, sizeof(Vec) * g.ph * g.pw);
    Gather(x + (n * g.c + c0) * g.h * g.w, count, g.h, g.w, in, g.pw, g.pad);
    BlockWeights(wt + c0 * g.k * g.k, g.k, count, wv);
    Vec bias = {};
    for (int64_t ci = 0; ci < count && b != nullptr; ++ci) bias[ci] = b[c0 + ci];
    ForwardBlock<S>(in, wv, bias, mode == 2, g, out);
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
DW_ENTRY(DwBackwardInputS1, (BackwardInput<1>(nparam, params, ndims, shapes, dtypes)))
DW_ENTRY(DwBackwardInputS2, (BackwardInput<2>(nparam, params, ndims, shapes, dtypes)))
DW_ENTRY(DwBackwardFilterS1, (BackwardFilter<1>(nparam, params, ndims, shapes, dtypes)))
DW_ENTRY(DwBackwardFilterS2, (BackwardFilter<2>(nparam, params, ndims, shapes, dtypes)))

// Channels per vector this library was built with (8: AVX2 or generic, 16: AVX-512); the loader checks it.
extern "C" int DwLanes() { return V; }
