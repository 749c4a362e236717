-- Frequency filter, step 1: keep the rows whose item has at least min_item_count impressions.
/*
  Reads   ${database}.samples, the train split.
  Defines filter_rows       the rows being filtered: sample_id, user_id, item_id, click, conversion
          item_counts       impressions per item among filter_rows
          rows_after_items  the rows of filter_rows whose item has at least min_item_count impressions
  Param   min_item_count (N). The seed kept items with `> 500` impressions, that is N = 501.

  Run it alone:
    python -m lakerec.jobs.sql -f lakerec/sql/filter/01_item_counts.sql --param min_item_count=501
  With --kcore, `python -m lakerec.jobs.filter` runs the statements after this first one again in
  every later round, with filter_rows bound to the rows step 2 kept in the round before.
*/
CREATE OR REPLACE TEMPORARY VIEW filter_rows AS
SELECT sample_id, user_id, item_id, click, conversion
FROM ${database}.samples
WHERE split = 'train';

-- Impressions per item
CREATE OR REPLACE TEMPORARY VIEW item_counts AS
SELECT item_id, count(*) AS impressions
FROM filter_rows
WHERE item_id IS NOT NULL
GROUP BY item_id;

-- The rows whose item has at least min_item_count impressions
CREATE OR REPLACE TEMPORARY VIEW rows_after_items AS
SELECT r.*
FROM filter_rows AS r
JOIN item_counts AS c ON c.item_id = r.item_id
WHERE c.impressions >= ${min_item_count};

-- Rows, users and items before and after the item filter
SELECT 'items' AS step,
       ${min_item_count} AS threshold,
       b.n_rows AS rows_before, a.n_rows AS rows_after,
       b.n_users AS users_before, a.n_users AS users_after,
       b.n_items AS items_before, a.n_items AS items_after
FROM (SELECT count(*) AS n_rows, count(DISTINCT user_id) AS n_users, count(DISTINCT item_id) AS n_items
      FROM filter_rows) AS b
CROSS JOIN
     (SELECT count(*) AS n_rows, count(DISTINCT user_id) AS n_users, count(DISTINCT item_id) AS n_items
      FROM rows_after_items) AS a;
