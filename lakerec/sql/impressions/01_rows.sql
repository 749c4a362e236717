-- Impressions, step 1: every valid impression of one split, and the filter's vocabularies to map it with.
/*
  Reads   ${database}.samples, ${database}.feature_vocab (written by `python -m lakerec.jobs.filter`).
  Defines featured_rows  every samples row of the split, clicked or not (the train split is NOT
                         frequency-filtered: the ranker scores every impression)
          feature_vocab  the filter's table, under the name lakerec/sql/map_features.sql reads
  Param   split (train or test).

  The impressions job runs, per split: this file, lakerec/sql/map_features.sql (the filter's
  own mapping of fields to feature_vocab indices, shared), 02_impressions.sql; it writes the
  view `impressions` to train_impressions / test_impressions, then reads them back with
  03_counts.sql. A user can run the same chain:

    python -m lakerec.jobs.sql -f lakerec/sql/impressions/01_rows.sql -f lakerec/sql/map_features.sql \
      -f lakerec/sql/impressions/02_impressions.sql \
      --param split=test --param history_length=16 --param item_intention_length=8
*/
CREATE OR REPLACE TEMPORARY VIEW featured_rows AS
SELECT *
FROM ${database}.samples
WHERE split = '${split}';

-- The train vocabularies of the fields (index 0 = missing or out of vocabulary)
CREATE OR REPLACE TEMPORARY VIEW feature_vocab AS
SELECT * FROM ${database}.feature_vocab;
