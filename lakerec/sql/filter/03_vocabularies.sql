-- Vocabularies, step 3: the kept train impressions with all their columns.
/*
  Reads   kept_rows (step 2), ${database}.samples, ${database}.user_contexts.
  Defines kept_samples         the samples rows of kept_rows (train split)
          user_order, user_shifts, item_order, item_shifts   the sorted ids, and where each partition starts
          user_vocab           one row per kept user
          kept_items           one row per kept item: counts, index, first impression
          feature_occurrences  (feature, raw_id, impressions) of every id of a field feature_vocab serves
          feature_vocab        one row per field and id: the side features of both towers, and the
                               ranker's fields (position, the user-item cross fields)

  An index is 1..n, contiguous: the most frequent id first, ties by the smaller id, so a
  re-run on the same rows gives the same indices. 0 is reserved for an id outside the
  vocabulary (a test user or item never kept, a missing field).
  The user and item indices come without a window over all rows (`row_number() OVER (ORDER
  BY ...)` moves every row to one partition, a limit for millions of items): a distributed
  sort (*_order), the rows of the partitions before each one (*_shifts, one row per
  partition), then index = rows before + place in the partition. The filter job holds
  *_order computed once (a local checkpoint), so both readers see the same partitions.
  Counts are over the kept train impressions.
  The feature lists (row_single_stack, row_multi_stack, user_multi_stack) are filled in from
  the field registry, lakerec/schema/fields.py; lakerec/sqlfiles.py documents each one.
*/
CREATE OR REPLACE TEMPORARY VIEW kept_samples AS
SELECT s.*
FROM ${database}.samples AS s
LEFT SEMI JOIN kept_rows AS k ON k.sample_id = s.sample_id
WHERE s.split = 'train';

-- user_order: the kept users sorted by vocabulary order (most impressions first, ties by user_id),
-- a distributed sort: partition _part holds a range of that order, _pos increases along it
CREATE OR REPLACE TEMPORARY VIEW user_order AS
SELECT *, spark_partition_id() AS _part, monotonically_increasing_id() AS _pos
FROM (SELECT user_id,
             count(*) AS impressions,
             CAST(sum(click) AS BIGINT) AS clicks,
             CAST(sum(conversion) AS BIGINT) AS conversions
      FROM kept_rows
      GROUP BY user_id
      ORDER BY impressions DESC, user_id);

-- user_shifts: per partition of user_order, what a row's _pos less gives its index - 1: the
-- partition's first _pos less the users of the partitions before it (one row per partition; a
-- running sum, not a self-join of the checkpointed user_order, which Spark cannot resolve with
-- spark.sql.adaptive.enabled=false)
CREATE OR REPLACE TEMPORARY VIEW user_shifts AS
SELECT _part, _first - coalesce(sum(_rows) OVER (ORDER BY _part ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
       AS _shift
FROM (SELECT _part, min(_pos) AS _first, count(*) AS _rows FROM user_order GROUP BY _part);

-- user_vocab: user_index 1..U, most impressions first, ties by user_id
-- (the shifts as one map, a scalar subquery: no join, so the plan's size estimate stays the rows')
CREATE OR REPLACE TEMPORARY VIEW user_vocab AS
SELECT user_id,
       CAST(_pos - element_at((SELECT map_from_entries(collect_list(struct(_part, _shift))) FROM user_shifts), _part) + 1
            AS INT) AS user_index,
       impressions,
       clicks,
       conversions
FROM user_order
ORDER BY user_index;

-- item_order: the kept items sorted by vocabulary order (most impressions first, ties by item_id), as user_order
CREATE OR REPLACE TEMPORARY VIEW item_order AS
SELECT *, spark_partition_id() AS _part, monotonically_increasing_id() AS _pos
FROM (SELECT item_id,
             count(*) AS impressions,
             CAST(sum(click) AS BIGINT) AS clicks,
             CAST(sum(conversion) AS BIGINT) AS conversions,
             min(sample_id) AS first_sample_id
      FROM kept_rows
      GROUP BY item_id
      ORDER BY impressions DESC, item_id);

-- item_shifts: per partition of item_order, as user_shifts
CREATE OR REPLACE TEMPORARY VIEW item_shifts AS
SELECT _part, _first - coalesce(sum(_rows) OVER (ORDER BY _part ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
       AS _shift
FROM (SELECT _part, min(_pos) AS _first, count(*) AS _rows FROM item_order GROUP BY _part);

-- Kept items: item_index 1..I, most impressions first, ties by item_id; the first impression gives the item's features
CREATE OR REPLACE TEMPORARY VIEW kept_items AS
SELECT item_id,
       CAST(_pos - element_at((SELECT map_from_entries(collect_list(struct(_part, _shift))) FROM item_shifts), _part) + 1
            AS INT) AS item_index,
       impressions,
       clicks,
       conversions,
       first_sample_id
FROM item_order;

-- Feature ids of the kept impressions: single-valued fields (side and ranker's), the impression's
-- multi-valued fields (item intentions, user-item intentions), and the history of each
-- impression's user context (counted once per impression of that context)
CREATE OR REPLACE TEMPORARY VIEW feature_occurrences AS
SELECT f.feature, f.raw_id, 1L AS impressions
FROM kept_samples
LATERAL VIEW stack(${row_single_stack}) f AS feature, raw_id
UNION ALL
SELECT f.feature, x.e.id AS raw_id, 1L AS impressions
FROM kept_samples
LATERAL VIEW stack(${row_multi_stack}) f AS feature, entries
LATERAL VIEW explode(f.entries) x AS e
UNION ALL
SELECT f.feature, x.e.id AS raw_id, c.n_impressions AS impressions
FROM (SELECT common_feature_index, count(*) AS n_impressions
      FROM kept_samples
      GROUP BY common_feature_index) AS c
JOIN ${database}.user_contexts AS u
  ON u.split = 'train' AND u.common_feature_index = c.common_feature_index
LATERAL VIEW stack(${user_multi_stack}) f AS feature, entries
LATERAL VIEW explode(f.entries) x AS e;

-- feature_vocab: per field, index 1..n, most impressions first, ties by raw_id
CREATE OR REPLACE TEMPORARY VIEW feature_vocab AS
SELECT feature,
       raw_id,
       CAST(row_number() OVER (PARTITION BY feature ORDER BY sum(impressions) DESC, raw_id) AS INT) AS `index`,
       CAST(sum(impressions) AS BIGINT) AS impressions
FROM feature_occurrences
WHERE raw_id IS NOT NULL
GROUP BY feature, raw_id
ORDER BY feature, `index`;

-- Vocabulary sizes
SELECT (SELECT count(*) FROM user_vocab) AS users,
       (SELECT count(*) FROM kept_items) AS items,
       (SELECT CAST(sum(clicks) AS BIGINT) FROM user_vocab) AS clicks,
       (SELECT CAST(sum(conversions) AS BIGINT) FROM user_vocab) AS conversions,
       (SELECT count(*) FROM feature_vocab) AS feature_ids;
