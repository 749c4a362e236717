-- Training tables, step 5: item_vocab, the kept items with the item tower's features.
/*
  Reads   kept_items, user_vocab, featured, user_histories, positives (steps 3 and 4).
  Defines item_vocab    one row per kept item, features from its first kept train impression
          interactions  one row per positive of either split, shaped for the two towers
  Param   history_length (L).
  The column lists (item_side_columns, user_single_columns, user_multi_arrays) are filled in
  from the field registry, lakerec/schema/fields.py; lakerec/sqlfiles.py documents each one.
  Each names its columns without a table alias: user_vocab and item_vocab are joined by
  their id and index only, so featured and user_histories are the one source of each.

  `python -m lakerec.jobs.filter` writes user_vocab, item_vocab, feature_vocab, and the rows of
  interactions of each split (without the split column) to train_interactions and
  test_interactions. A test user or item that is not in the train vocabulary gets index 0
  and is_cold_user / is_cold_item = true: the row is kept, flagged, and counted.
*/
CREATE OR REPLACE TEMPORARY VIEW item_vocab AS
SELECT i.item_id, i.item_index, i.impressions, i.clicks, i.conversions,
       ${item_side_columns}
FROM kept_items AS i
JOIN featured AS f ON f.split = 'train' AND f.sample_id = i.first_sample_id
ORDER BY i.item_index;

-- Positives of both splits with user and item index, user side, history and item side
CREATE OR REPLACE TEMPORARY VIEW interactions AS
SELECT p.split,
       p.sample_id, p.user_id, p.item_id,
       coalesce(u.user_index, 0) AS user_index,
       coalesce(i.item_index, 0) AS item_index,
       u.user_index IS NULL AS is_cold_user,
       i.item_index IS NULL AS is_cold_item,
       ${user_single_columns},
       ${user_multi_arrays},
       ${item_side_columns}
FROM positives AS p
JOIN featured AS f ON f.split = p.split AND f.sample_id = p.sample_id
LEFT JOIN (SELECT user_id, user_index FROM user_vocab) AS u ON u.user_id = p.user_id
LEFT JOIN (SELECT item_id, item_index FROM item_vocab) AS i ON i.item_id = p.item_id
LEFT JOIN user_histories AS h ON h.split = p.split AND h.common_feature_index = p.common_feature_index;

-- Positives per split, and the test rows whose user or item is not in the train vocabulary
SELECT count_if(split = 'train') AS train_positives,
       (SELECT count(*) FROM ${database}.samples WHERE split = 'test') AS test_rows,
       count_if(split = 'test') AS test_positives,
       count_if(split = 'test' AND is_cold_user) AS test_cold_user_rows,
       count_if(split = 'test' AND is_cold_item) AS test_cold_item_rows,
       count_if(split = 'test' AND (is_cold_user OR is_cold_item)) AS test_cold_rows
FROM interactions;

-- Vocabulary size of each side feature (index 0, missing or unknown, comes on top)
SELECT feature, count(*) AS ids, sum(impressions) AS impressions
FROM feature_vocab
GROUP BY feature
ORDER BY feature;
