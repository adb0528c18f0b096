"""A mixture-of-experts layer whose experts keep memories (:mod:`memrec.memory.expert_memory`).

For an input ``x`` (N, d_in) the gate picks the ``top_k`` experts of each row (softmax, renormalised
over the chosen ones). Expert ``e`` computes its feed-forward output and, with ``use_memory``, reads
its own memories::

    r   = sum_j softmax_j(s * cos(x, key_j)) value_j      over the k retrieved memories (cos >= threshold)
    y_e = FFN_e(x) + sigmoid(w_g [x; r] + b_g) * W_r r     (W_r starts as the identity; r = 0 without memories)
    out = sum_e gate_e(x) y_e

The retrieval itself picks entries without gradient, but the weights, the read gate, ``W_r``, the
temperature ``s`` and, through ``cos(x, key)``, the input all receive gradients whenever memory is
read in training. Values of item-bearing memories are looked up in a caller's ``value_table`` at
read time, so the table learns too.

A call changes memory only with ``store_experience=True``: each row is stored in the short-term
memory of its top expert (importance = that expert's gate weight), the retrieved entries count one
access, and every ``consolidation_interval`` / ``prune_interval`` such calls all experts consolidate
/ prune. Other calls (evaluation) read only, so their results do not depend on their batch.
``store_experience()`` and ``few_shot_adapt()`` write episodic memories on purpose.

Specializations label the experts; an experience stored with ``metadata={'task': 'vision'}`` and no
``target_expert`` goes to an expert specialised in vision (the gate picks among several), else to
the gate's choice. Routing of ordinary inputs is learned by the gate; nothing forces it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from memrec.errors import ConfigError
from memrec.memory.expert_memory import TIERS, ExpertMemory, ExpertMemoryConfig, MemoryInputError, Recall
from memrec.nn import Dropout

FORMAT = "memrec-expert-memories/1"


class ExpertSpecialization(str, Enum):
    GENERAL = "general"
    VISION = "vision"
    LANGUAGE = "language"
    REASONING = "reasoning"
    MULTIMODAL = "multimodal"


@dataclass
class MemoryContext:
    """Optional per-row information for a forward pass over N rows (all tensors (N,) unless noted)."""

    owners: torch.Tensor | None = None  # int64 user of each row (-1: none); see expert_memory visibility
    positions: torch.Tensor | None = None  # int64: row predicts what follows this position of its owner
    upto: torch.Tensor | None = None  # int64: latest position an entry stored from this row depends on
    items: torch.Tensor | None = None  # int64 item each stored entry recalls (values read from value_table)
    store: torch.Tensor | None = None  # bool: which rows to store (default: all)
    value_table: torch.Tensor | None = None  # (V, d_out) resolves item-bearing memories when read

    def rows(self, name: str, rows: torch.Tensor) -> torch.Tensor | None:
        x = getattr(self, name)
        return None if x is None else x.reshape(-1)[rows]


class GatingNetwork(nn.Module):
    """Softmax gate over experts with top-k routing and usage statistics (counted in training mode).

    Example:
        >>> gate = GatingNetwork(input_dim=4, num_experts=3, top_k=2)
        >>> weights, probs = gate(torch.randn(5, 4))
        >>> weights.shape, int((weights > 0).sum(1).max()), gate.get_usage_statistics()["total_forwards"]
        (torch.Size([5, 3]), 2, 5)
    """

    def __init__(self, input_dim: int, num_experts: int, top_k: int = 2):
        super().__init__()
        if num_experts < 1 or not 1 <= top_k <= num_experts:
            raise ConfigError(f"expected num_experts >= 1 and 1 <= top_k <= num_experts, got {num_experts} and {top_k}")
        self.num_experts, self.top_k = num_experts, top_k
        self.proj = nn.Linear(input_dim, num_experts)
        self.reset_usage_statistics()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, d) -> sparse weights (N, E) summing to 1 over the top-k experts, full probabilities (N, E)."""
        probs = self.proj(x).softmax(-1)
        top = probs.topk(self.top_k, dim=-1)
        chosen = top.values / top.values.sum(-1, keepdim=True)
        weights = torch.zeros_like(probs).scatter(-1, top.indices, chosen)
        if self.training:  # evaluation changes no state, statistics included
            self.forward_calls += 1
            self.total_forwards += len(x)
            self.expert_counts = self.expert_counts + torch.bincount(top.indices[:, 0].detach().cpu(), minlength=self.num_experts)
        return weights, probs

    def reset_usage_statistics(self) -> None:
        self.forward_calls, self.total_forwards = 0, 0
        self.expert_counts = torch.zeros(self.num_experts, dtype=torch.int64)  # rows whose top expert was e

    def get_usage_statistics(self) -> dict:
        """``total_forwards`` = rows routed; ``expert_counts[e]`` = rows whose top expert was e (they sum to it)."""
        counts = {e: int(c) for e, c in enumerate(self.expert_counts)}
        return {"total_forwards": self.total_forwards, "forward_calls": self.forward_calls, "expert_counts": counts,
                "expert_fractions": {e: c / max(self.total_forwards, 1) for e, c in counts.items()}}

    def get_extra_state(self) -> dict:
        return {"calls": torch.tensor(self.forward_calls), "rows": torch.tensor(self.total_forwards), "counts": self.expert_counts.clone()}

    def set_extra_state(self, state: dict) -> None:
        self.forward_calls, self.total_forwards = int(state["calls"]), int(state["rows"])
        self.expert_counts = state["counts"].clone()


class MemoryExpert(nn.Module):
    """One expert: a feed-forward network plus its own memories, read through a learned gate.

    Example:
        >>> expert = MemoryExpert(4, 8, 3, ExpertMemoryConfig(similarity_threshold=0.0))
        >>> x = torch.randn(2, 4)
        >>> torch.equal(expert(x, None), expert.ffn(x))  # nothing retrieved: a plain feed-forward expert
        True
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, memory_config: ExpertMemoryConfig,
                 specialization: ExpertSpecialization = ExpertSpecialization.GENERAL, dropout: float = 0.0):
        super().__init__()
        self.specialization = ExpertSpecialization(specialization)
        self.ffn = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.GELU(), Dropout(dropout), nn.Linear(hidden_dim, output_dim))
        self.memory = ExpertMemory(input_dim, output_dim, memory_config)
        self.read_proj = nn.Linear(output_dim, output_dim, bias=False)  # W_r
        self.read_gate = nn.Linear(input_dim + output_dim, 1)
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))  # s: sharpness of the read weights
        self.reset_memory_reader()

    def reset_memory_reader(self) -> None:
        """W_r = identity, read gate open at sigmoid(1): a retrieved value is added as it is."""
        with torch.no_grad():
            self.read_proj.weight.copy_(torch.eye(self.read_proj.weight.size(0)))
            self.read_gate.weight.zero_()
            self.read_gate.bias.fill_(1.0)

    def read(self, x: torch.Tensor, recall: Recall, value_table: torch.Tensor | None = None) -> torch.Tensor:
        """Memory readout r: x (n, d_in) and a recall of k slots -> (n, d_out)."""
        values = recall.values  # (n, k, d_out)
        if value_table is not None and (recall.items >= 0).any():
            values = torch.where((recall.items >= 0)[..., None], value_table[recall.items.clamp(min=0)], values)
        sim = (F.normalize(x, dim=-1)[:, None, :] * recall.keys).sum(-1)  # (n, k), differentiable in x
        logits = (sim * self.log_scale.exp()).masked_fill(~recall.valid, float("-inf"))
        weights = logits.softmax(-1).nan_to_num(0.0) * recall.valid  # rows with nothing retrieved: all 0
        return (weights[..., None] * values).sum(1)

    def forward(self, x: torch.Tensor, recall: Recall | None, value_table: torch.Tensor | None = None) -> torch.Tensor:
        y = self.ffn(x)  # (n, d_out)
        if recall is None or not recall.valid.any():
            return y
        r = self.read(x, recall, value_table)
        return y + torch.sigmoid(self.read_gate(torch.cat([x, r], -1))) * self.read_proj(r)


class MemoryEnhancedMoE(nn.Module):
    """Mixture of memory experts: ``model(x, use_memory=..., store_experience=...) -> (output, info)``.

    Example:
        >>> torch.manual_seed(0) and None
        >>> moe = MemoryEnhancedMoE(input_dim=8, output_dim=3, num_experts=2, hidden_dim=16)
        >>> x = torch.randn(4, 8)
        >>> out, info = moe(x, use_memory=True, store_experience=True)
        >>> out.shape, info["total_memories_retrieved"], moe.get_memory_statistics()["short_term_count"]
        (torch.Size([4, 3]), 0, 4)
        >>> info = moe(x, use_memory=True)[1]  # the same inputs now find themselves in memory
        >>> info["total_memories_retrieved"] >= 4
        True
    """

    def __init__(self, input_dim: int, output_dim: int, num_experts: int = 8, hidden_dim: int = 512,
                 expert_specializations: list | None = None, memory_config: ExpertMemoryConfig | None = None,
                 top_k: int = 2, dropout: float = 0.0):
        super().__init__()
        if input_dim < 1 or output_dim < 1 or hidden_dim < 1:
            raise ConfigError(f"expected positive dimensions, got input {input_dim}, output {output_dim}, hidden {hidden_dim}")
        specs = expert_specializations or [ExpertSpecialization.GENERAL] * num_experts
        if len(specs) != num_experts:
            raise ConfigError(f"got {len(specs)} expert specializations for {num_experts} experts")
        self.input_dim, self.output_dim = input_dim, output_dim
        self.memory_config = memory_config or ExpertMemoryConfig()
        self.gate = GatingNetwork(input_dim, num_experts, min(top_k, num_experts))
        self.experts = nn.ModuleList(MemoryExpert(input_dim, hidden_dim, output_dim, self.memory_config, s, dropout) for s in specs)
        self.steps = 0  # forward calls that stored experience
        self.maintenance = {"consolidations": 0, "prunings": 0}

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    def _check_input(self, x: torch.Tensor, what: str = "input") -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise MemoryInputError(f"{what} must be a float tensor of shape (..., {self.input_dim})")
        if x.dim() == 0 or x.size(-1) != self.input_dim:
            raise MemoryInputError(f"{what} must have shape (..., {self.input_dim}), got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise MemoryInputError(f"{what} contains NaN or infinite values")
        return x

    # --- forward -----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, use_memory: bool = True, store_experience: bool = False,
                context: MemoryContext | None = None, writes: list | None = None) -> tuple[torch.Tensor, dict]:
        """x (..., d_in) -> output (..., d_out) and info (see the module docstring for what changes memory).
        With ``store_experience`` and a ``writes`` list, the memory changes (access counts, stored rows,
        maintenance) are appended to ``writes`` as one callable instead of applied: the call itself
        then changes nothing (a trainer applies them after its optimizer step)."""
        lead = self._check_input(x).shape[:-1]
        flat = x.reshape(-1, self.input_dim)  # (N, d_in)
        ctx = context or MemoryContext()
        weights, probs = self.gate(flat)  # (N, E) x 2
        out = flat.new_zeros(len(flat), self.output_dim)
        retrieved = [0] * self.num_experts
        accessed = []  # (expert, recall) pairs whose access statistics a storing call records
        for e, expert in enumerate(self.experts):
            rows = (weights[:, e] > 0).nonzero().flatten()
            if not len(rows):
                continue
            xe, recall = flat[rows], None
            if use_memory and len(expert.memory):
                recall = expert.memory.retrieve(xe.detach(), owners=ctx.rows("owners", rows), positions=ctx.rows("positions", rows))
                retrieved[e] = recall.count
                accessed.append((expert, recall))
            out = out.index_add(0, rows, weights[rows, e, None] * expert(xe, recall, ctx.value_table))
        stored = 0
        if store_experience:
            write = self._experience_write(flat, out, weights, ctx, accessed)
            if writes is None:
                stored = write()
            else:
                writes.append(write)
        top1 = F.one_hot(weights.argmax(-1), self.num_experts).float().mean(0)
        info = {
            "total_memories_retrieved": sum(retrieved),
            "memories_per_expert": retrieved,
            "memories_stored": stored,
            "routing_weights": weights.detach().reshape(*lead, self.num_experts),
            "top_experts": weights.topk(self.gate.top_k, -1).indices.reshape(*lead, self.gate.top_k),
            "balance_loss": self.num_experts * (top1 * probs.mean(0)).sum(),  # Switch-style load balance
        }
        return out.reshape(*lead, self.output_dim), info

    @torch.no_grad()
    def _experience_write(self, x, out, weights, ctx: MemoryContext, accessed: list):
        """What a storing call changes, as a callable returning the rows stored: the access statistics
        of its recalls, each (selected) row into the short-term memory of its top expert, then interval
        maintenance. Values are taken now (a stored copy of the item table as it is at this call)."""
        importance, top = weights.detach().max(-1)  # (N,)
        keep = torch.ones(len(x), dtype=torch.bool) if ctx.store is None else ctx.store.reshape(-1).bool()
        values = out.detach()
        if ctx.items is not None and ctx.value_table is not None:  # stored copy; reads use the live table
            items = ctx.items.reshape(-1)
            values = torch.where((items >= 0)[:, None], ctx.value_table.detach()[items.clamp(min=0)], values)
        x = x.detach()

        def write() -> int:
            for expert, recall in accessed:
                expert.memory.record_access(recall)
            stored = 0
            for e, expert in enumerate(self.experts):
                rows = ((top == e) & keep).nonzero().flatten()
                if len(rows):
                    stored += expert.memory.store(x[rows], values[rows], importance[rows], "short_term", ctx.rows("items", rows),
                                                  ctx.rows("owners", rows), ctx.rows("upto", rows))
            self._step()
            return stored

        return write

    def _step(self) -> None:
        self.steps += 1
        for expert in self.experts:
            expert.memory.tick()
        c = self.memory_config
        if c.consolidation_interval and self.steps % c.consolidation_interval == 0:
            self.consolidate_memory()
        if c.enable_pruning and c.prune_interval and self.steps % c.prune_interval == 0:
            self.prune_memory()

    # --- the seed's memory operations ----------------------------------------------------------

    def _label_value(self, y) -> torch.Tensor:
        """A target as a value: a class index -> one-hot (d_out,), a vector (d_out,) as it is."""
        y = torch.as_tensor(y)
        if not y.is_floating_point() and y.numel() == 1:
            if not 0 <= int(y) < self.output_dim:
                raise MemoryInputError(f"class label {int(y)} is out of range 0..{self.output_dim - 1}")
            return F.one_hot(y.reshape(()).long(), self.output_dim).float()
        if y.numel() != self.output_dim or not torch.isfinite(y.float()).all():
            raise MemoryInputError(f"a target must be a class index or a finite vector of {self.output_dim} values, got shape {tuple(y.shape)}")
        return y.reshape(self.output_dim).float()

    def _choose_expert(self, x: torch.Tensor, metadata: dict | None, target_expert: int | None) -> torch.Tensor:
        """Expert of each row (n,): the one asked for, else a specialist for metadata's task, else the gate's top one."""
        if target_expert is not None:
            if not 0 <= int(target_expert) < self.num_experts:
                raise MemoryInputError(f"target_expert must be in 0..{self.num_experts - 1}, got {target_expert}")
            return torch.full((len(x),), int(target_expert), dtype=torch.int64)
        probs = self.gate.proj(x).softmax(-1)  # no usage counting for bookkeeping calls
        task = str((metadata or {}).get("task", (metadata or {}).get("specialization", ""))).lower()
        specialist = torch.tensor([e.specialization.value == task for e in self.experts])
        if specialist.any():
            probs = probs.masked_fill(~specialist, -1.0)
        return probs.argmax(-1)

    @torch.no_grad()
    def store_experience(self, input_data: torch.Tensor, metadata: dict | None = None, importance: float = 0.5,
                         target_expert: int | None = None, values: torch.Tensor | None = None) -> dict:
        """Store inputs (d_in,) or (n, d_in) as episodic memories. The value recalled is ``values``
        (n, d_out), else ``metadata['target']`` / ``metadata['label']`` (class index or vector), else
        the expert's own output now."""
        x = self._check_input(input_data, "input_data").reshape(-1, self.input_dim)
        experts = self._choose_expert(x, metadata, target_expert)
        label = None if metadata is None else metadata.get("target", metadata.get("label"))
        if values is not None:
            values = torch.as_tensor(values, dtype=torch.float32).reshape(len(x), self.output_dim)
        elif label is not None:
            values = self._label_value(label).expand(len(x), -1)
        stored = []
        for e in experts.unique().tolist():
            rows = (experts == e).nonzero().flatten()
            v = values[rows] if values is not None else self.experts[e].ffn(x[rows])
            self.experts[e].memory.store(x[rows], v, importance, "episodic", metadata=[metadata] * len(rows))
            stored += [e] * len(rows)
        self._step()
        return {"stored": len(x), "experts": sorted(stored)}

    @torch.no_grad()
    def store_episodes(self, x: torch.Tensor, items: torch.Tensor, importance: float = 0.95, owners: torch.Tensor | None = None,
                       upto: torch.Tensor | None = None, value_table: torch.Tensor | None = None) -> int:
        """Store rows x (n, d_in) as episodic memories that recall ``items`` (n,) int64: each in the
        memory of the gate's top expert for it; one storing step. A recommender's few-shot path: the
        stored value is ``value_table[item]`` and, as for memories stored in training, reads resolve
        it from the live table. ``owners`` / ``upto`` (n,): see expert_memory *visibility*.

        Example:
            >>> moe = MemoryEnhancedMoE(input_dim=4, output_dim=4, num_experts=2, hidden_dim=8)
            >>> moe.store_episodes(torch.randn(3, 4), torch.tensor([1, 2, 3]), value_table=torch.randn(5, 4))
            3
            >>> moe.get_memory_statistics()["episodic_count"]
            3
        """
        x = self._check_input(x, "x").reshape(-1, self.input_dim)
        items = torch.as_tensor(items, dtype=torch.int64).flatten()
        if len(items) != len(x):
            raise MemoryInputError(f"got {len(x)} rows but {len(items)} items")
        if value_table is None or value_table.dim() != 2 or value_table.size(1) != self.output_dim:
            raise MemoryInputError(f"store_episodes needs a value_table of shape (num_items, {self.output_dim})")
        if len(items) and (items.min() < 0 or items.max() >= len(value_table)):
            raise MemoryInputError(f"items must be in 0..{len(value_table) - 1}")
        experts = self._choose_expert(x, None, None)
        values = value_table.detach()[items]
        for e in experts.unique().tolist():
            rows = (experts == e).nonzero().flatten()
            self.experts[e].memory.store(x[rows], values[rows], importance, "episodic", items[rows],
                                         None if owners is None else torch.as_tensor(owners).flatten()[rows],
                                         None if upto is None else torch.as_tensor(upto).flatten()[rows])
        self._step()
        return len(x)

    def few_shot_adapt(self, examples: list, importance: float = 0.95) -> dict:
        """Adapt from a few ``(x, y)`` examples without gradient steps: each is stored as an episodic
        memory of high importance whose value is its target, so similar inputs recall it."""
        if not examples:
            raise MemoryInputError("few_shot_adapt needs at least one (input, target) example")
        experts = []
        for n, example in enumerate(examples):
            if not isinstance(example, (tuple, list)) or len(example) != 2:
                raise MemoryInputError(f"example {n} must be an (input, target) pair")
            x, y = example
            info = self.store_experience(x, {"target": y, "few_shot": True}, importance=importance)
            experts += info["experts"]
        return {"num_examples": len(examples), "memories_stored": len(experts), "experts_used": sorted(set(experts))}

    def consolidate_memory(self) -> dict:
        """Every expert moves important short-term memories to long-term (and semantic) now."""
        self.maintenance["consolidations"] += 1
        per = [expert.memory.consolidate() for expert in self.experts]
        return {key: sum(p[key] for p in per) for key in per[0]}

    def prune_memory(self, min_importance: float | None = None) -> dict:
        """Every expert drops memories below ``min_importance`` (default: the config's) now."""
        self.maintenance["prunings"] += 1
        per = [expert.memory.prune(min_importance) for expert in self.experts]
        return {tier: sum(p[tier] for p in per) for tier in TIERS}

    def clear_memory(self) -> None:
        for expert in self.experts:
            expert.memory.clear()

    def get_memory_statistics(self) -> dict:
        per_expert = {}
        for e, expert in enumerate(self.experts):
            s = expert.memory.statistics()
            per_expert[e] = {**s, "specialization": expert.specialization.value}
        total = {tier: sum(p[tier] for p in per_expert.values()) for tier in TIERS}
        return {"total_memories": sum(total.values()), **{f"{t}_count": n for t, n in total.items()},
                "per_expert": per_expert, "steps": self.steps, **self.maintenance}

    # --- persistence -------------------------------------------------------------------------

    def get_extra_state(self) -> dict:
        return {"steps": torch.tensor(self.steps), "consolidations": torch.tensor(self.maintenance["consolidations"]),
                "prunings": torch.tensor(self.maintenance["prunings"])}

    def set_extra_state(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.maintenance = {"consolidations": int(state["consolidations"]), "prunings": int(state["prunings"])}

    def save_memory(self, path: str | Path) -> None:
        """Write the memories, gate statistics and step counter alone (weights go with ``state_dict``)."""
        torch.save({"format": FORMAT, "layer": self.get_extra_state(), "gate": self.gate.get_extra_state(),
                    "experts": [expert.memory.get_extra_state() for expert in self.experts]}, path)

    def load_memory(self, path: str | Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise MemoryInputError(f"{path} is not a memrec expert-memory file (expected format {FORMAT!r})")
        if len(state["experts"]) != self.num_experts:
            raise MemoryInputError(f"{path} holds memories of {len(state['experts'])} experts, this layer has {self.num_experts}")
        self.set_extra_state(state["layer"])
        self.gate.set_extra_state(state["gate"])
        for expert, memory in zip(self.experts, state["experts"]):
            expert.memory.set_extra_state(memory)
