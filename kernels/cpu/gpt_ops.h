/* The GPT-2 transformer ops on the CPU: fp32, row-major host arrays, CBLAS
 * sgemm wherever the op is a GEMM, plain loops elsewhere. The op set is
 * llm.c's train_gpt2.c (encoder, layernorm, attention, GELU, residual,
 * softmax + cross-entropy), with the fusions its CUDA version and cuBLASLt
 * use (the fused classifier, GELU's derivative with the bias gradient).
 * The matmuls are the backend's GEMM with epilogues (kernels/backend.h,
 * pb_gemm; backend_cpu.c), shared with the MLP.
 * docs/transformer-ops.md gives each op's math, shapes, what forward saves
 * for backward, and the FLOP count.
 *
 * Shapes: B batch, T sequence, C channels (d_model), NH heads (C % NH == 0),
 * N = B*T rows for the per-token ops, V vocabulary, Vp V padded to a
 * multiple of 128. Token ids are in [0, V) (the caller validates them).
 *
 * Every backward ACCUMULATES (+=) into the gradients it writes, parameters'
 * and inputs' alike, as llm.c's do: a tensor that feeds two consumers (the
 * residual stream) sums both without a copy, and the caller zeroes the
 * gradients once per step. The fused classifier is the one exception: it
 * writes the logits' gradient (in place of the logits if asked).
 *
 * No op allocates: the one that needs a scratch buffer (attention backward)
 * takes it from the caller, so a measured step allocates nothing.
 * None can fail on valid shapes, so none returns a status. */
#ifndef PB_GPT_OPS_H
#define PB_GPT_OPS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]; out [B,T,C], wte [V(p),C],
 * wpe [>=T,C]. */
void pb_cpu_encoder_fwd(float *out, const int *tokens, const float *wte, const float *wpe, int B, int T, int C);
/* dwte[tokens[b,t],:] += dout[b,t,:]; dwpe[t,:] += dout[b,t,:] */
void pb_cpu_encoder_bwd(float *dwte, float *dwpe, const float *dout, const int *tokens, int B, int T, int C);

/* Per row of x [N,C]: out = (x - mean) * rstd * w + b, eps 1e-5, biased
 * variance (PyTorch's LayerNorm). Saves mean [N] and rstd [N]. */
#define PB_LAYERNORM_EPS 1e-5f
void pb_cpu_layernorm_fwd(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int N,
                          int C);
/* dx += ..., dw += dout * xhat, db += dout, from the saved mean and rstd */
void pb_cpu_layernorm_bwd(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                          const float *mean, const float *rstd, int N, int C);

/* dpre [N,OC] = dout * gelu'(pre) (written; dpre may be dout) and, when
 * dbias is not NULL, dbias += its column sums in the same pass, while each
 * row is in cache: cuBLASLt's DGELU_BGRAD epilogue, which the cpu backend's
 * gemm_bwd runs on dx for PB_DACT_GELU. */
void pb_cpu_dgelu_bgrad(float *dpre, float *dbias, const float *dout, const float *pre, int N, int OC);

/* out = gelu(x), n elements; backward dx += gelu'(x) * dout (reads x). */
void pb_cpu_gelu_fwd(float *out, const float *x, size_t n);
void pb_cpu_gelu_bwd(float *dx, const float *dout, const float *x, size_t n);

/* out = a + b, n elements. Its backward is da += dout, db += dout:
 * pb_cpu_residual_bwd does exactly that, for callers that keep separate
 * gradients (a residual stream normally accumulates in place instead). */
void pb_cpu_residual_fwd(float *out, const float *a, const float *b, size_t n);
void pb_cpu_residual_bwd(float *da, float *db, const float *dout, size_t n);

/* Causal multi-head self-attention. qkv [B,T,3C]: per token q | k | v, each
 * C = NH heads of hs = C/NH. out [B,T,C] (heads side by side, ready for the
 * output projection). att [B,NH,T,T]: the softmax probabilities, saved for
 * backward (upper triangle zero); the pre-softmax scores are not kept.
 * Per (b, h): S = scale Q K^T (sgemm), causal softmax per row, O = P V
 * (sgemm), scale = 1/sqrt(hs). */
void pb_cpu_attention_fwd(float *out, float *att, const float *qkv, int B, int T, int C, int NH);
/* The floats of scratch attention backward needs: T*T (one head's dP). */
size_t pb_cpu_attention_scratch(int T);
/* dqkv [B,T,3C] += the gradient of out w.r.t. qkv, from dout [B,T,C] and the
 * saved att. Per (b, h): dP = dO V^T, dV += P^T dO, dS = P * (dP - rowsum(P
 * * dP)) (causal part only), dQ += scale dS K, dK += scale dS^T Q: four
 * sgemm. scratch: pb_cpu_attention_scratch(T) floats. */
void pb_cpu_attention_bwd(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att, int B,
                          int T, int C, int NH);
/* The same sgemm calls as the op (2 forward, 4 backward per head), on the
 * same buffers and shapes, with no softmax or masking between them: the
 * GEMMs-alone reference that the attention op's time is judged against.
 * The numbers written are meaningless. */
void pb_cpu_attention_gemms_fwd(float *out, float *att, const float *qkv, int B, int T, int C, int NH);
void pb_cpu_attention_gemms_bwd(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att,
                                int B, int T, int C, int NH);

/* Softmax cross-entropy over logits [N,Vp] of which the first V count:
 * losses[i] = logsumexp(logits[i, :V]) - logits[i, targets[i]].
 * The forward alone (evaluation) leaves logits as they are. */
void pb_cpu_classifier_fwd(float *losses, const float *logits, const int *targets, int N, int V, int Vp);
/* The fused classifier: the losses as above, and dlogits [N,Vp] = dloss *
 * (softmax - onehot(target)) for the first V columns and 0 for the
 * padding, so no softmax is stored beside the logits (dloss is 1/N for a
 * mean loss). dlogits may be logits (overwritten in place); written in
 * one pass either way, so a separate output costs no copy. */
void pb_cpu_classifier_fused(float *losses, float *dlogits, const float *logits, const int *targets, int N, int V,
                             int Vp, float dloss);

#ifdef __cplusplus
}
#endif
#endif /* PB_GPT_OPS_H */
