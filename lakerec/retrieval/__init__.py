"""Two-tower retrieval: Petastorm feed, TFRS model, honest evaluation, export, MLflow.

The stages, each with `run(spark, cfg, ...)`, the one API that the jobs, the notebooks and
the tests call:
    train      read the tables, fit (or resume) with a checkpoint per epoch, export, register, evaluate
    evaluate   a run's exported model on test_interactions against the baselines; logged into the run
    recommend  top-K per vocabulary user from a run's exported model -> Delta table `recommendations`
    sweep      a grid or random search of train settings: child runs scored on the validation slice,
               the best written as a config file

The modules they are built from, each with one job:
    protocols  named training presets (tfrs-tutorial) and the checks on the training settings
    features   which columns each tower reads, and the vocabulary sizes (FeatureSpec)
    data       Spark DataFrame -> Petastorm converter -> tf.data; the frames the stages read
    towers     query and candidate towers built from a FeatureSpec
    model      TwoTowerModel(tfrs.Model): in-batch softmax, logQ, accidental hits, temperature;
               the item bias / popularity prior as one more dimension; build_model
    loop       the training step: fit(dataset factory, model factory, params) with checkpoints
    callbacks  per-epoch monitoring (test sample, curves only), validation (the slice carved from
               train), early stopping, MLflow metrics (and a test hook that interrupts a run)
    distributed the same fit on N Spark barrier tasks (MultiWorkerMirroredStrategy), one shard each
    metrics    recall@K, NDCG@K, top-K accuracy from the ranks of the positives (numpy)
    catalogue_ranks  full-catalogue ranks for the model and the baselines; the results table
    export     query tower + index over all items as a SavedModel; MLflow pyfunc
    pyfunc_model  the pyfunc wrapper, logged as code (self-contained)
    plots      training curves, recall against K, the popularity long tail
    tracking   MLflow set-up from the config: URI, experiment, git commit, table versions; run helpers
"""
