"""The recommendation service: one MLflow model that retrieves, re-ranks and answers per request.

    recommender.py   the two stages over the bundle's snapshot (in process: no server needed)
    index.py         the retrieval index: exact (default) or FAISS HNSW
    pyfunc_model.py  the MLflow pyfunc wrapper (logged as code; the scoring server calls it)
    export.py        the bundle (models, user/item snapshot) and its logging and registration

`python -m lakerec.jobs.recommend` builds and registers it (mlflow.registered_recommender);
`python -m lakerec.jobs.serve` serves it over MLflow's scoring server.
"""
