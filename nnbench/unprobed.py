"""The primitives cells rely on that no probe exercises, and why (for the probe-link table).

A floor module (no torch): the report reads it without importing the probes.
"""

from __future__ import annotations

NOT_PROBED: dict[str, str] = {
    "add_vector_at_step:decoder_layer": "add_vector at every decoding step (generation_steering)",
    "zero_at_step:mlp": "zero at every decoding step (zero_ablation, generation workload)",
    "call:final_norm": "calling a module on a new tensor inside a trace (logit lens)",
    "call:unembed": "calling the head on a new tensor (HF logit lens; vLLM refuses: its lm_head has no forward)",
    "read:unembed_weight": "reading the unembedding weight (vLLM logit lens)",
    "sum:dual_residual": "vLLM Llama's stream is mlp_out + residual (a layout fact, not an operation)",
    "grad:decoder_layer": "gradients of a layer output (attribution patching; vLLM runs under inference_mode)",
    "read_output:attention_weights": "HF eager attention's probability output (vLLM has none)",
    "read_at_step:attention_weights": "the same at every decoding step",
    "read_input:attention_kernel": "the q, k vLLM's attention kernel is handed (the aware attention read)",
    "read_at_step:attention_kernel": "the same at every decoding step",
}
