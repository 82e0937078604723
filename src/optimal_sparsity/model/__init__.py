"""The Mixtral-style MoE decoder: layers, MoE backends, auxiliary losses."""

from optimal_sparsity.model.transformer import ModelOutput, MoECausalLM, build_model

__all__ = ["MoECausalLM", "ModelOutput", "build_model"]
