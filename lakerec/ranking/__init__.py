"""The ranking stage: a multi-task click and conversion model over every impression, its evaluation and the two-stage run.

    features.py   the columns the ranker reads (from the field registry) and their vocabulary sizes
    model.py      DCN-v2 + deep MLP, pCTR and pCVR heads (ESMM), a training-only position tower
    train.py      `python -m lakerec.jobs.rank`: Petastorm-fed fit, MLflow run, registered model
    scoring.py    Ranker / load_ranker: a registered ranker loaded and scoring impressions
    metrics.py    AUC, GAUC, log loss, calibration in Spark
    baselines.py  item CTR, logistic regression, two-tower score, oracle
    evaluate.py   `python -m lakerec.jobs.evaluate_ranker`: the ranking table on test_impressions
    two_stage.py  two-tower candidates re-ranked by the ranker, against retrieval alone and the oracle
    rerank.py     the second stage of `recommend`; candidate_pairs: a candidate's ranker inputs
    candidate_crosses.py  a candidate's cross fields, computed from the user's history (or absent)
"""
