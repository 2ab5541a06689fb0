/* The encoder: token + position embeddings forward, and a deterministic
 * backward (kernels, then launchers). Semantics are the CPU's
 * pb_cpu_encoder_fwd/bwd (docs/transformer-ops.md). Activations (out,
 * dout) in the device's activation type (fp32, or bf16 with --precision
 * bf16), the embeddings and their gradients fp32.
 *
 * Backward without atomics: atomicAdd of the rows that share a token would
 * add in whatever order the blocks ran, so two runs would differ in the last
 * bits. Instead the token ids are radix-sorted with their row index (CUB's
 * sort is stable, so within a token the rows stay in order), and one block
 * per run of equal tokens sums its rows in that order and adds the sum to
 * dwte's row: the same bits every run. dwpe needs no sort: position t's
 * rows are b*T + t, summed over b in order by one thread per (t, channel).
 * llm.c sorts the buckets on the host for the same reason; here the tokens
 * are already on the device, so they are sorted there. */
#ifndef PB_CUDA_ENCODER_CUH
#define PB_CUDA_ENCODER_CUH

#include <cub/device/device_radix_sort.cuh>

#include "gpt_state.cuh"

/* ------------------------------------------------------------------------ */
/* kernels                                                                  */

template <typename T>
__global__ void encoder_fwd_kernel(T *out, const int32_t *tokens, const float *wte, const float *wpe, int N, int Tlen,
                                   int C)
{
    size_t total = (size_t)N * (size_t)C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t bt = i / (size_t)C, c = i % (size_t)C;
        size_t t = bt % (size_t)Tlen;
        out[i] = from_float<T>(wte[(size_t)tokens[bt] * C + c] + wpe[t * C + c]);
    }
}

/* dwpe[t, c] += sum over b of dout[b, t, c], b in order */
template <typename T>
__global__ void encoder_bwd_wpe_kernel(float *dwpe, const T *dout, int B, int Tlen, int C)
{
    size_t total = (size_t)Tlen * (size_t)C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int b = 0; b < B; b++) s += to_float(dout[(size_t)b * total + i]);
        dwpe[i] += s;
    }
}

/* rows[i] = i: the values the sort carries along with the tokens */
__global__ void iota_kernel(int32_t *rows, int N)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += gridDim.x * blockDim.x) rows[i] = i;
}

/* Block i works when sorted position i starts a run of equal tokens: it
 * sums the run's rows of dout in sorted (= row) order, channel by channel
 * across its threads, and adds the sum to dwte[token]. */
template <typename T>
__global__ void encoder_bwd_wte_kernel(float *dwte, const T *dout, const int32_t *sorted_tok,
                                       const int32_t *sorted_row, int N, int C)
{
    int i = blockIdx.x;
    if (i >= N || (i > 0 && sorted_tok[i] == sorted_tok[i - 1])) return;
    int tok = sorted_tok[i];
    int end = i + 1;
    while (end < N && sorted_tok[end] == tok) end++;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float s = 0.0f;
        for (int j = i; j < end; j++) s += to_float(dout[(size_t)sorted_row[j] * C + c]);
        dwte[(size_t)tok * C + c] += s;
    }
}

/* ------------------------------------------------------------------------ */
/* launchers                                                                */

static pb_status cuda_encoder_fwd(pb_device *dev, float *out, const int32_t *tokens, const float *wte,
                                  const float *wpe, int B, int T, int C)
{
    pb_status st = PB_OK;
    size_t n = (size_t)B * (size_t)T * (size_t)C;
    if (n == 0) return PB_OK;
    PB_TRY(use_device(dev));
    if (is_bf16(dev))
        encoder_fwd_kernel<bf16><<<grid_for(dev, n), THREADS, 0, dev->stream>>>((bf16 *)out, tokens, wte, wpe, B * T, T,
                                                                              C);
    else
        encoder_fwd_kernel<float><<<grid_for(dev, n), THREADS, 0, dev->stream>>>(out, tokens, wte, wpe, B * T, T, C);
    PB_CUDA_CHECK_LAUNCH("encoder_fwd_kernel");
cleanup:
    return st;
}

/* The sort looks at all 32 bits of the ids: the op is not told V, and
 * fewer bits would only save passes of a sort over N ints (small beside
 * the step's GEMMs). */
static pb_status cuda_encoder_bwd(pb_device *dev, float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                                  int B, int T, int C)
{
    pb_status st = PB_OK;
    const int N = B * T;
    size_t cub_bytes = 0, ids = scratch_align((size_t)N * sizeof(int32_t));
    char *s = NULL;
    int32_t *rows_in, *rows_out, *tok_out;
    const unsigned wte_threads = C < THREADS ? (unsigned)(C + 31) / 32 * 32 : THREADS;
    if (N == 0 || C == 0) return PB_OK;
    PB_TRY(use_device(dev));
    if (is_bf16(dev))
        encoder_bwd_wpe_kernel<bf16><<<grid_for(dev, (size_t)T * C), THREADS, 0, dev->stream>>>(
            dwpe, (const bf16 *)dout, B, T, C);
    else
        encoder_bwd_wpe_kernel<float><<<grid_for(dev, (size_t)T * C), THREADS, 0, dev->stream>>>(dwpe, dout, B, T, C);
    PB_CUDA_CHECK_LAUNCH("encoder_bwd_wpe_kernel");
    /* the scratch: rows in, rows out, tokens out, then CUB's own */
    PB_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, cub_bytes, (const int32_t *)NULL, (int32_t *)NULL,
                                                  (const int32_t *)NULL, (int32_t *)NULL, N, 0,
                                                  32, dev->stream));
    PB_TRY(gpt_scratch(dev, 3 * ids + cub_bytes, (void **)&s));
    rows_in = (int32_t *)s;
    rows_out = (int32_t *)(s + ids);
    tok_out = (int32_t *)(s + 2 * ids);
    iota_kernel<<<grid_for(dev, (size_t)N), THREADS, 0, dev->stream>>>(rows_in, N);
    PB_CUDA_CHECK_LAUNCH("iota_kernel");
    PB_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(s + 3 * ids, cub_bytes, tokens, tok_out, rows_in, rows_out, N, 0,
                                                  32, dev->stream));
    if (is_bf16(dev))
        encoder_bwd_wte_kernel<bf16><<<N, wte_threads, 0, dev->stream>>>(dwte, (const bf16 *)dout, tok_out, rows_out,
                                                                         N, C);
    else
        encoder_bwd_wte_kernel<float><<<N, wte_threads, 0, dev->stream>>>(dwte, dout, tok_out, rows_out, N, C);
    PB_CUDA_CHECK_LAUNCH("encoder_bwd_wte_kernel");
cleanup:
    return st;
}

#endif /* PB_CUDA_ENCODER_CUH */
