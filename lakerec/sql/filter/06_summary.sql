-- What the last filter run wrote: vocabulary sizes, positives, cold-start rows of the test split.
/*
  Reads the tables `python -m lakerec.jobs.filter` writes, so it runs on its own after a run:
    python -m lakerec.jobs.sql -f lakerec/sql/filter/06_summary.sql
*/
SELECT (SELECT count(*) FROM ${database}.user_vocab) AS users,
       (SELECT count(*) FROM ${database}.item_vocab) AS items,
       (SELECT count(*) FROM ${database}.train_interactions) AS train_positives,
       (SELECT count(*) FROM ${database}.samples WHERE split = 'test') AS test_rows,
       (SELECT count(*) FROM ${database}.test_interactions) AS test_positives,
       (SELECT count_if(is_cold_user) FROM ${database}.test_interactions) AS test_cold_user_rows,
       (SELECT count_if(is_cold_item) FROM ${database}.test_interactions) AS test_cold_item_rows,
       (SELECT count_if(is_cold_user OR is_cold_item) FROM ${database}.test_interactions) AS test_cold_rows;

-- Vocabulary size of each side feature (index 0, missing or unknown, comes on top)
SELECT feature, count(*) AS ids, sum(impressions) AS impressions
FROM ${database}.feature_vocab
GROUP BY feature
ORDER BY feature;
