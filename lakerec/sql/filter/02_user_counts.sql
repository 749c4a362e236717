-- Frequency filter, step 2: of the rows step 1 kept, keep those whose user has at least min_user_count.
/*
  Reads   rows_after_items (step 1, same session).
  Defines user_counts  impressions per user among rows_after_items (rows without a user id
                       are never kept: there is no user to train)
          kept_rows    the rows of rows_after_items whose user has at least min_user_count
  Param   min_user_count (M). The seed kept users with `> 50` impressions, that is M = 51.

  Step 1 defines the views this step reads, so run the two in one session, for example
    cat lakerec/sql/filter/01_item_counts.sql lakerec/sql/filter/02_user_counts.sql > /tmp/filter.sql
    python -m lakerec.jobs.sql -f /tmp/filter.sql --param min_item_count=501 --param min_user_count=51
  With --kcore, `python -m lakerec.jobs.filter` repeats steps 1 and 2 on kept_rows until a step
  removes nothing, so every kept item and user then meets its threshold among the kept rows.
*/
CREATE OR REPLACE TEMPORARY VIEW user_counts AS
SELECT user_id, count(*) AS impressions
FROM rows_after_items
WHERE user_id IS NOT NULL
GROUP BY user_id;

-- The rows whose user has at least min_user_count impressions among the kept items
CREATE OR REPLACE TEMPORARY VIEW kept_rows AS
SELECT r.*
FROM rows_after_items AS r
JOIN user_counts AS c ON c.user_id = r.user_id
WHERE c.impressions >= ${min_user_count};

-- Rows, users and items before and after the user filter
SELECT 'users' AS step,
       ${min_user_count} AS threshold,
       b.n_rows AS rows_before, a.n_rows AS rows_after,
       b.n_users AS users_before, a.n_users AS users_after,
       b.n_items AS items_before, a.n_items AS items_after
FROM (SELECT count(*) AS n_rows, count(DISTINCT user_id) AS n_users, count(DISTINCT item_id) AS n_items
      FROM rows_after_items) AS b
CROSS JOIN
     (SELECT count(*) AS n_rows, count(DISTINCT user_id) AS n_users, count(DISTINCT item_id) AS n_items
      FROM kept_rows) AS a;
