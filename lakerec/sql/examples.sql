-- Impressions, clicks and conversions per split: the funnel (CVR is conversions per click)
/*
  The questions a data engineer asks first about the ingested Ali-CCP tables.
  Each statement runs on its own; all of them run after `python -m lakerec.jobs.ingest`:
    python -m lakerec.jobs.sql -f lakerec/sql/examples.sql
    python -m lakerec.jobs.sql -f lakerec/sql/examples.sql --format csv > examples.csv
  They read ${database}.samples and ${database}.user_contexts.
*/
SELECT split,
       count(*) AS impressions,
       sum(click) AS clicks,
       sum(conversion) AS conversions,
       round(avg(click), 5) AS ctr,
       round(sum(conversion) / nullif(sum(click), 0), 5) AS cvr,
       round(avg(conversion), 6) AS ctcvr,
       count(DISTINCT user_id) AS users,
       count(DISTINCT item_id) AS items
FROM ${database}.samples
GROUP BY split
ORDER BY split;

-- CTR and CVR by position (field 301)
SELECT split,
       position,
       count(*) AS impressions,
       sum(click) AS clicks,
       sum(conversion) AS conversions,
       round(avg(click), 5) AS ctr,
       round(sum(conversion) / nullif(sum(click), 0), 5) AS cvr
FROM ${database}.samples
GROUP BY split, position
ORDER BY split, position;

-- Item popularity deciles, train split: decile 1 is the most shown tenth of the items (the long tail is decile 10)
WITH items AS (
  SELECT item_id, count(*) AS impressions, sum(click) AS clicks
  FROM ${database}.samples
  WHERE split = 'train' AND item_id IS NOT NULL
  GROUP BY item_id
), deciles AS (
  SELECT *, ntile(10) OVER (ORDER BY impressions DESC, item_id) AS decile
  FROM items
)
SELECT decile,
       count(*) AS items,
       min(impressions) AS min_impressions,
       max(impressions) AS max_impressions,
       sum(impressions) AS impressions,
       round(sum(impressions) / sum(sum(impressions)) OVER (), 4) AS share_of_impressions,
       round(sum(clicks) / sum(impressions), 5) AS ctr
FROM deciles
GROUP BY decile
ORDER BY decile;

-- Users per activity bucket, train split: impressions per user (the seed kept users with 51 or more)
WITH users AS (
  SELECT user_id, count(*) AS impressions, sum(click) AS clicks
  FROM ${database}.samples
  WHERE split = 'train' AND user_id IS NOT NULL
  GROUP BY user_id
), bucketed AS (
  SELECT *,
         CASE WHEN impressions = 1 THEN 1
              WHEN impressions <= 5 THEN 2
              WHEN impressions <= 10 THEN 3
              WHEN impressions <= 50 THEN 4
              WHEN impressions <= 100 THEN 5
              WHEN impressions <= 500 THEN 6
              ELSE 7 END AS bucket_order
  FROM users
)
SELECT element_at(array('1', '2-5', '6-10', '11-50', '51-100', '101-500', '501+'), bucket_order) AS impressions_per_user,
       count(*) AS users,
       sum(impressions) AS impressions,
       round(sum(impressions) / sum(sum(impressions)) OVER (), 4) AS share_of_impressions,
       sum(clicks) AS clicks
FROM bucketed
GROUP BY bucket_order
ORDER BY bucket_order;

-- Field coverage: the share of impressions where each field is present
WITH present AS (
  SELECT split,
         count(*) AS impressions,
         count(user_id) AS user_id, count(user_profile) AS user_profile, count(user_group) AS user_group,
         count(user_gender) AS user_gender, count(user_age) AS user_age,
         count(user_consumption) AS user_consumption, count(user_consumption_2) AS user_consumption_2,
         count(user_is_occupied) AS user_is_occupied, count(user_geography) AS user_geography,
         count(item_id) AS item_id, count(item_category) AS item_category, count(item_shop) AS item_shop,
         count_if(size(item_intention) > 0) AS item_intention, count(item_brand) AS item_brand,
         count(position) AS position,
         count(user_item_categories) AS user_item_categories, count(user_item_shops) AS user_item_shops,
         count(user_item_brands) AS user_item_brands,
         count_if(size(user_item_intentions) > 0) AS user_item_intentions
  FROM ${database}.samples
  GROUP BY split
)
SELECT split, field, rows_with_field, impressions, round(rows_with_field / impressions, 4) AS coverage
FROM present
LATERAL VIEW stack(19,
    1, 'user_id', user_id, 2, 'user_profile', user_profile, 3, 'user_group', user_group,
    4, 'user_gender', user_gender, 5, 'user_age', user_age, 6, 'user_consumption', user_consumption,
    7, 'user_consumption_2', user_consumption_2, 8, 'user_is_occupied', user_is_occupied,
    9, 'user_geography', user_geography, 10, 'item_id', item_id, 11, 'item_category', item_category,
    12, 'item_shop', item_shop, 13, 'item_intention', item_intention, 14, 'item_brand', item_brand,
    15, 'position', position, 16, 'user_item_categories', user_item_categories,
    17, 'user_item_shops', user_item_shops, 18, 'user_item_brands', user_item_brands,
    19, 'user_item_intentions', user_item_intentions) s AS field_order, field, rows_with_field
ORDER BY split, field_order;

-- Multi-valued fields: the share of rows that carry one, and how many ids it holds when present
WITH lengths AS (
  SELECT split, 1 AS field_order, 'item_intention' AS field, 'samples' AS source, size(item_intention) AS ids
  FROM ${database}.samples
  UNION ALL
  SELECT split, 2, 'user_item_intentions', 'samples', size(user_item_intentions) FROM ${database}.samples
  UNION ALL
  SELECT split, 3, 'user_categories', 'user_contexts', size(user_categories) FROM ${database}.user_contexts
  UNION ALL
  SELECT split, 4, 'user_shops', 'user_contexts', size(user_shops) FROM ${database}.user_contexts
  UNION ALL
  SELECT split, 5, 'user_brands', 'user_contexts', size(user_brands) FROM ${database}.user_contexts
  UNION ALL
  SELECT split, 6, 'user_intentions', 'user_contexts', size(user_intentions) FROM ${database}.user_contexts
)
SELECT split, field, source,
       count(*) AS n_rows,
       round(avg(CAST(ids > 0 AS INT)), 4) AS coverage,
       round(avg(CASE WHEN ids > 0 THEN ids END), 2) AS avg_ids,
       percentile_approx(CASE WHEN ids > 0 THEN ids END, 0.5) AS median_ids,
       percentile_approx(CASE WHEN ids > 0 THEN ids END, 0.9) AS p90_ids,
       max(ids) AS max_ids
FROM lengths
GROUP BY split, field_order, field, source
ORDER BY split, field_order;
