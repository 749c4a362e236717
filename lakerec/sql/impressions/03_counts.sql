-- Impressions, step 3: what the last run wrote, per split, reconciled with samples.
/*
  Reads the tables `python -m lakerec.jobs.impressions` writes, and samples and user_contexts,
  so it runs on its own after a run:
    python -m lakerec.jobs.sql -f lakerec/sql/impressions/03_counts.sql

  rows must equal samples_rows (every valid impression, none dropped); cold rows are those
  whose user / item is not in the train vocabulary (index 0, kept); oov_rows counts, per
  field, the rows where it is present but maps to nothing (index 0, or arrays of padding only).
  The list oov_counts is filled in from the field registry (lakerec/sqlfiles.py).
*/
SELECT p.split,
       coalesce(n.samples_rows, 0) AS samples_rows,
       coalesce(c.rows, 0) AS rows,
       coalesce(c.clicks, 0) AS clicks,
       coalesce(c.conversions, 0) AS conversions,
       coalesce(c.cold_user_rows, 0) AS cold_user_rows,
       coalesce(c.cold_item_rows, 0) AS cold_item_rows,
       c.oov_rows
FROM (SELECT 'train' AS split UNION ALL SELECT 'test' AS split) AS p
LEFT JOIN (SELECT split, count(*) AS samples_rows FROM ${database}.samples GROUP BY split) AS n
  ON n.split = p.split
LEFT JOIN (
  SELECT w.split,
         count(*) AS rows,
         CAST(sum(w.click) AS BIGINT) AS clicks,
         CAST(sum(w.conversion) AS BIGINT) AS conversions,
         count_if(w.is_cold_user) AS cold_user_rows,
         count_if(w.is_cold_item) AS cold_item_rows,
         map(${oov_counts}) AS oov_rows
  FROM (SELECT 'train' AS split, * FROM ${database}.train_impressions
        UNION ALL
        SELECT 'test' AS split, * FROM ${database}.test_impressions) AS w
  LEFT JOIN ${database}.samples AS s ON s.split = w.split AND s.sample_id = w.sample_id
  LEFT JOIN (SELECT split, common_feature_index, ${user_multi_fields} FROM ${database}.user_contexts) AS u
    ON u.split = s.split AND u.common_feature_index = s.common_feature_index
  GROUP BY w.split
) AS c ON c.split = p.split
ORDER BY p.split DESC;
