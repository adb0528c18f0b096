"""MR.Rec: an LLM recommendation assistant with hierarchical memory and reasoning-guided retrieval.

Modules (imported on use, so that ``import memrec.assist`` stays light):

- :mod:`memrec.assist.types`: queries, memory chunks, answers, the ``Reasoner`` / ``TextGenerator`` protocols;
- :mod:`memrec.assist.memory`: local (records, patterns, profile) and global (aspects) memory, the retrieval tool;
- :mod:`memrec.assist.deterministic`: the reasoner without an LLM (the default back-end);
- :mod:`memrec.assist.catalog`: the item pool and dense retrieval;
- :mod:`memrec.assist.pipeline`: the assistant (aspects -> memory -> ideal item profile -> items);
- :mod:`memrec.assist.queries`: the synthetic Scientific requests, Amazon-C4 and TALLRec loaders;
- :mod:`memrec.assist.metrics` / :mod:`memrec.assist.evaluate`: Recall / NDCG, MPC / MRC, efficiency, AUC;
- :mod:`memrec.assist.cli`: ``memrec assist build-memory | ask | evaluate | train-rl | serve-llm``.
"""
