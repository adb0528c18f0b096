"""memrec's online service: a FastAPI app over a checkpoint and a state store (event logs + memories).

``memrec serve CHECKPOINT --store state.db`` runs it; :mod:`memrec.serve.app` lists the endpoints.
Importing this package does not import FastAPI. Event logs and the stores that keep them live in
:mod:`memrec.store` (:mod:`memrec.store.events`).
"""
