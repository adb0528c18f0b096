"""memrec's online service: a FastAPI app over a checkpoint and a state store (event logs + memories).

``memrec serve CHECKPOINT --store state.db`` runs it; :mod:`memrec.serve.app` lists the endpoints.
Importing this package does not import FastAPI: the store back-ends use :mod:`memrec.serve.events`.
"""
